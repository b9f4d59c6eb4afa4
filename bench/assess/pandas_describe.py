#!/usr/bin/env python3
"""pandas: read one Parquet file and DataFrame.describe(include="all"). Usage: pandas_describe.py FILE"""
import json, sys, time
t0 = time.time()
import pandas as pd
df = pd.read_parquet(sys.argv[1])
t1 = time.time()
d = df.describe(include="all")
t2 = time.time()
print(json.dumps({"tool": "pandas", "version": pd.__version__, "rows": len(df), "columns": len(df.columns),
                  "import_load_s": round(t1 - t0, 3), "describe_s": round(t2 - t1, 3), "total_s": round(t2 - t0, 3)}))
