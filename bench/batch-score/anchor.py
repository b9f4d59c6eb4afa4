"""The anchor of bench/batch-score: the obvious Python batch-scoring job.

pyarrow reads the Parquet files in batches, onnxruntime scores each batch with `session.run`,
pyarrow writes the key, the label and the probabilities to one Parquet file.

    anchor.py MODEL.onnx OUT.parquet BATCH_ROWS IN.parquet [IN.parquet ...]
"""

import sys

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq

model, out, batch_rows, inputs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
features = [f"input_{j}" for j in range(30)]
writer = None
rows = 0
for path in inputs:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=["customer_id"] + features):
        x = np.column_stack([batch.column(f).to_numpy() for f in features]).astype(np.float32, copy=False)
        label, proba = session.run(None, {name: x})[:2]
        table = pa.table(
            {
                "customer_id": batch.column("customer_id"),
                "label": pa.array(np.asarray(label).reshape(-1)),
                "probability_0": pa.array(np.asarray(proba)[:, 0]),
                "probability_1": pa.array(np.asarray(proba)[:, 1]),
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(out, table.schema)
        writer.write_table(table)
        rows += batch.num_rows
if writer is not None:
    writer.close()
print(f"{rows} rows scored into {out}")
