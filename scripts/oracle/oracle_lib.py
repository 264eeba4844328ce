"""Shared plumbing for the c360 oracles and the peer benchmarks.

The SQL files next to this module are the oracle definitions; this module only binds them
to a source folder, fills in the as-of date and writes results in the fixture CSV format.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import duckdb

ORACLE_DIR = Path(__file__).resolve().parent
TABLES = ("customers", "orders", "interactions", "support_tickets")


def sql_text(name: str) -> str:
    """The text of scripts/oracle/<name>.sql."""
    return (ORACLE_DIR / f"{name}.sql").read_text()


def render_sql(sql: str, as_of: dt.date | str) -> str:
    """Substitute $as_of with a DATE literal.

    COPY (...) TO cannot take prepared-statement parameters, so the benchmark needs the date
    formatted in; going through date.fromisoformat first means only a real date can reach
    the SQL text.
    """
    day = as_of if isinstance(as_of, dt.date) else dt.date.fromisoformat(as_of)
    return sql.replace("$as_of", f"DATE '{day.isoformat()}'")


def table_scan(source: Path, table: str) -> str:
    """A DuckDB table expression for one contract table: T.parquet, or a (Hive) folder T/."""
    single = source / f"{table}.parquet"
    if single.is_file():
        return f"read_parquet('{single}')"
    folder = source / table
    if folder.is_dir():
        return f"read_parquet('{folder}/**/*.parquet', hive_partitioning = true, union_by_name = true)"
    raise FileNotFoundError(f"table {table!r}: neither {single} nor {folder}/ exists")


def connect(source: Path | str, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the four contract tables bound as views over the Parquet.

    TimeZone is pinned to UTC because CAST(timestamptz AS DATE) uses the session zone, and
    event dates are defined as UTC calendar dates.
    """
    source = Path(source)
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    # The views hand every timestamp to the SQL as a naive UTC TIMESTAMP (microseconds):
    #  * DuckDB rounds TIMESTAMP_NS to the nearest microsecond when casting it (to DATE too),
    #    so an event at 23:59:59.999999999 would land on the next day: nanosecond columns
    #    are floored to microseconds instead (exact for the date).
    #  * CAST(timestamptz AS DATE) goes through ICU's calendar (about 10x slower than the
    #    arithmetic cast); epoch_us of a TIMESTAMPTZ is its UTC instant, so rebuilding a naive
    #    TIMESTAMP from it gives the same UTC date without ICU. This matters for the benchmark,
    #    which must give DuckDB its fast path.
    con.execute("""
        CREATE MACRO floor_us(x) AS make_timestamp(
            (epoch_ns(x) - ((epoch_ns(x) % 1000) + 1000) % 1000) // 1000)
    """)
    for table in TABLES:
        scan = table_scan(source, table)
        cols = con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()
        select = ", ".join(_utc_column(name, ctype) for name, ctype, *_ in cols)
        con.execute(f"CREATE VIEW {table} AS SELECT {select} FROM {scan}")
    return con


def _utc_column(name: str, ctype: str) -> str:
    ctype = ctype.upper()
    if "_NS" in ctype:
        return f'floor_us("{name}") AS "{name}"'
    if ctype in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return f'make_timestamp(epoch_us("{name}")) AS "{name}"'
    return f'"{name}"'


def run_feature_sql(con: duckdb.DuckDBPyConnection, name: str, as_of) -> tuple[list[str], list[tuple]]:
    """Run scripts/oracle/<name>.sql at as_of; returns (column names, rows)."""
    cur = con.execute(render_sql(sql_text(name), as_of))
    cols = [c[0] for c in cur.description]
    return cols, cur.fetchall()


def fmt(value) -> str:
    """The fixture CSV cell format agreed with the Rust tests.

    null -> empty, bool -> true/false, float -> repr (round-trips exactly), date -> ISO.
    bool is tested before int because bool is a subclass of int in Python.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value)
    if isinstance(value, dt.datetime):
        raise TypeError(f"unexpected datetime in oracle output: {value!r}")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def write_csv(path: Path, columns: list[str], rows) -> None:
    """Write rows in the fixture format. Cells never contain commas or quotes (ids, numbers,
    dates and segment names), which is asserted rather than escaped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(columns)]
    for row in rows:
        cells = [fmt(v) for v in row]
        for cell in cells:
            assert "," not in cell and '"' not in cell and "\n" not in cell, cell
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
