#!/usr/bin/env python3
"""DuckDB: SUMMARIZE on one Parquet file (default threads = cores). Usage: duckdb_summarize.py FILE"""
import json, sys, time
t0 = time.time()
import duckdb
con = duckdb.connect()
t1 = time.time()
s = con.execute(f"SUMMARIZE SELECT * FROM read_parquet('{sys.argv[1]}')").df()
t2 = time.time()
print(json.dumps({"tool": "duckdb", "version": duckdb.__version__, "columns": len(s),
                  "threads": con.execute("select current_setting('threads')").fetchone()[0],
                  "import_s": round(t1 - t0, 3), "summarize_s": round(t2 - t1, 3), "total_s": round(t2 - t0, 3)}))
