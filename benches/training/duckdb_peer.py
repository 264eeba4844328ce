"""DuckDB's 12-date training set: one process, one query (benches/training/training_set.sql).

    .venv-oracle/bin/python benches/training/duckdb_peer.py --data DIR --spine spine.parquet \\
        --out out.parquet [--threads 2]

run.py starts this once per measurement (its own process, its own peak RSS). Binds the
four contract tables as oracle_lib's views and `spine` to the spine Parquet, runs
`COPY (training_set.sql) TO out.parquet`, and prints one JSON line:
{"seconds": time inside DuckDB (connect included), "rows": rows written}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORACLE = HERE.parents[1] / "scripts" / "oracle"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="source folder with the four tables")
    ap.add_argument("--spine", type=Path, required=True, help="spine Parquet (customer_id, as_of)")
    ap.add_argument("--out", type=Path, required=True, help="output Parquet")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads (default 2)")
    args = ap.parse_args()
    sys.path.insert(0, str(ORACLE))
    import oracle_lib

    for p in (args.spine, args.out):
        if "'" in str(p):
            raise SystemExit(f"{p}: a path with a quote cannot be put in the SQL text; rename it")
    t0 = time.perf_counter()
    con = oracle_lib.connect(args.data, threads=args.threads)
    con.execute(f"CREATE VIEW spine AS SELECT customer_id, CAST(as_of AS DATE) AS as_of "
                f"FROM read_parquet('{args.spine}')")
    query = (HERE / "training_set.sql").read_text()
    rows = con.execute(f"COPY ({query}) TO '{args.out}' (FORMAT parquet)").fetchall()[0][0]
    print(json.dumps({"seconds": time.perf_counter() - t0, "rows": rows}))


if __name__ == "__main__":
    main()
