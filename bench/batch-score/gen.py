"""Writes N rows x 30 FP32 features (input_0..input_29, the names `keel batch score` maps to
the fixture models' one [N, 30] input) and a customer_id key, as one Parquet file.

The features are drawn around the breast-cancer fixture's feature means so the models see
realistic magnitudes; the generator's seed is fixed (the same file for the same N).
"""

import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

n, path = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(7)
# Column means of sklearn's breast-cancer data (the fixtures' training set), rounded.
means = np.array(
    [14.1, 19.3, 92.0, 655.0, 0.096, 0.104, 0.089, 0.049, 0.181, 0.063,
     0.405, 1.22, 2.87, 40.3, 0.007, 0.025, 0.032, 0.012, 0.021, 0.004,
     16.3, 25.7, 107.3, 880.6, 0.132, 0.254, 0.272, 0.115, 0.290, 0.084],
    dtype=np.float32,
)
chunk = 1_000_000
schema = pa.schema([("customer_id", pa.string())] + [(f"input_{j}", pa.float32()) for j in range(30)])
with pq.ParquetWriter(path, schema) as w:
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = (means * rng.lognormal(0.0, 0.25, size=(m, 30))).astype(np.float32)
        ids = pa.array([f"c{i}" for i in range(start, start + m)])
        w.write_table(pa.Table.from_arrays([ids] + [pa.array(x[:, j]) for j in range(30)], schema=schema))
