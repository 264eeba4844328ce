"""Runs a query compiled by `c360 features sql` in DuckDB over a Customer 360 source.

The four contract tables (customers, orders, interactions, support_tickets) become views
over <source>/<table>.parquet (or the folder <source>/<table>/), the session time zone is
UTC (timestamps are UTC in the contract), and an optional spine file becomes the view
`spine`. The result is written as Parquet (types kept) to --out.

With --from-dialect athena (Trino) or spark the query is first parsed in that dialect and
transpiled to DuckDB by sqlglot (a check of the text, not a run on that engine).

Usage: run_duckdb.py --source DIR --sql FILE --out FILE.parquet [--spine FILE]
                     [--from-dialect duckdb|athena|spark]
"""

import argparse
import os
import sys

import duckdb

TABLES = ["customers", "orders", "interactions", "support_tickets"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", required=True)
    p.add_argument("--sql", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--spine")
    p.add_argument("--from-dialect", default="duckdb", choices=["duckdb", "athena", "spark"])
    a = p.parse_args()
    with open(a.sql, encoding="utf-8") as f:
        query = f.read()
    if a.from_dialect != "duckdb":
        import sqlglot  # only needed for this check

        query = sqlglot.transpile(query, read=a.from_dialect, write="duckdb")[0]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for t in TABLES:
        path = os.path.join(a.source, t + ".parquet")
        if not os.path.exists(path):
            path = os.path.join(a.source, t, "**", "*.parquet")
        con.execute(
            f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{path}', hive_partitioning = false)"
        )
    if a.spine:
        reader = "read_csv" if a.spine.endswith(".csv") else "read_parquet"
        con.execute(f"CREATE VIEW spine AS SELECT * FROM {reader}('{a.spine}')")
    rel = con.sql(query)
    rel.write_parquet(a.out)
    print(f"{len(rel.columns)} columns -> {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
