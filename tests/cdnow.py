"""CDNOW's purchase log as the project's contract files, for the customer-value tests.

The files come from the `lifetimes` wheel (installed --no-deps by the Makefile as test data;
nothing imports it): `CDNOW_master.txt` (a header, then one line per purchase: customer id,
date YYYYMMDD, number of CDs, dollar value; 23,570 customers, January 1997 to June 1998) and
`CDNOW_sample.txt` (no header; master customer id, sample id, date, CDs, dollars: the published
1/10 sample of 2,357 customers). Both are whitespace-separated columns.

The log has no order id: each line becomes order `<customer>-<date>-<line>`, the customer and
date as the file writes them and the file's 1-based line number, so the same file always gives
the same ids and two purchases by one customer on one day stay two orders.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

# name -> (columns per line, header lines, index of the customer id column)
LAYOUTS = {
    "CDNOW_master.txt": (4, 1, 0),
    "CDNOW_sample.txt": (5, 0, 0),
}


def cdnow_file(name: str) -> Path:
    """The installed copy of one of the CDNOW files, found among the dist's files."""
    dist = importlib.metadata.distribution("lifetimes")
    for file in dist.files or ():
        if file.name == name:
            return Path(str(dist.locate_file(file)))
    raise FileNotFoundError(f"{name} is not in the installed lifetimes {dist.version}")


@dataclass(frozen=True)
class Log:
    """The purchase log as read from the file, one entry per line (NumPy arrays)."""

    customer: np.ndarray  # str, as written (zero-padded)
    date: np.ndarray  # str YYYYMMDD
    dollars: np.ndarray  # str, as written
    cents: np.ndarray  # int64, the dollar value in cents
    line: np.ndarray  # int64, the file's 1-based line number


def read_log(name: str) -> Log:
    """Split the file into its columns (whitespace-separated, no quoting)."""
    width, header, customer_col = LAYOUTS[name]
    lines = cdnow_file(name).read_text().splitlines()[header:]
    tokens = np.array(" ".join(lines).split(), dtype=object)
    if tokens.size != width * len(lines):
        raise ValueError(f"{name}: expected {width} columns on every line")
    cols = tokens.reshape(len(lines), width)
    dollars = cols[:, -1].astype(str)
    return Log(
        customer=cols[:, customer_col].astype(str),
        date=cols[:, -3].astype(str),
        dollars=dollars,
        cents=np.rint(dollars.astype(np.float64) * 100).astype(np.int64),
        line=np.arange(header + 1, header + 1 + len(lines), dtype=np.int64),
    )


def write_contract_files(name: str, out: Path) -> Log:
    """Write the log as the contract's `orders.csv` (every line a completed order at the
    day's midnight, the amount as written) and `users.csv` (each customer signed up at
    their first purchase) in `out`; returns the log as read."""
    log = read_log(name)
    customer = pa.array(log.customer)
    date = pa.array(log.date)
    day = pc.strptime(date, format="%Y%m%d", unit="s")
    order_ts = pc.strftime(day, format="%Y-%m-%d %H:%M:%S")
    order_id = pc.binary_join_element_wise(
        customer, date, pc.cast(pa.array(log.line), pa.string()), "-"
    )
    orders = pa.table(
        {
            "order_id": order_id,
            "user_id": customer,
            "order_ts": order_ts,
            "status": pa.array(np.full(len(log.line), "completed")),
            "total_amount": pa.array(log.dollars),
        }
    )
    firsts = (
        pa.table({"user_id": customer, "signup_ts": order_ts})
        .group_by("user_id")
        .aggregate([("signup_ts", "min")])
        .rename_columns(["user_id", "signup_ts"])
        .sort_by("user_id")
    )
    out.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(orders, out / "orders.csv")
    pacsv.write_csv(firsts, out / "users.csv")
    return log
