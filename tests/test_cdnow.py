"""CDNOW's real purchase log through the whole warehouse (issue 16): the full log ingests,
builds and checks clean, and what the warehouse holds equals an independent reading of the
file."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from productlens import clv
from productlens.cli import main
from tests.cdnow import Log, write_contract_files
from tests.conftest import q, warehouse_engine


@pytest.fixture(scope="module")
def full_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Log]:
    project = tmp_path_factory.mktemp("cdnow_full")
    log = write_contract_files("CDNOW_master.txt", project / "data")
    for step in (("ingest", str(project / "data")), ("build",), ("check",)):
        # In-process: a subprocess per step would add an interpreter start to the suite.
        assert main(["--project", str(project), *step]) == 0, step
    return project, log


def test_the_full_log_goes_in_exactly(full_log: tuple[Path, Log]) -> None:
    project, log = full_log
    # The independent side: the file's columns in NumPy, amounts in integer cents.
    customers, inverse = np.unique(log.customer, return_inverse=True)
    n_orders = np.bincount(inverse)
    cents = np.bincount(inverse, weights=log.cents).astype(np.int64)
    assert len(customers) == 23_570
    assert n_orders.sum() == 69_659
    assert cents.sum() == 250_031_563  # $2,500,315.63

    engine = warehouse_engine(project / "warehouse.duckdb", read_only=True)
    try:
        totals = engine.fetch_all(
            q("select count(*), count(distinct user_id), sum(total_amount) from core.fct_orders")
        )
        per_user = engine.fetch_arrow(
            q(
                "select user_id, n_orders, cast(round(revenue * 100) as bigint) as cents"
                " from marts.customer_metrics order by user_id"
            )
        )
    finally:
        engine.close()
    n, n_users, revenue = totals[0]
    assert (n, n_users) == (69_659, 23_570)
    assert round(revenue * 100) == 250_031_563
    assert per_user.column("user_id").to_pylist() == customers.tolist()
    np.testing.assert_array_equal(per_user.column("n_orders").to_numpy(), n_orders)
    np.testing.assert_array_equal(per_user.column("cents").to_numpy(), cents)


def test_both_models_fit_the_full_log(
    full_log: tuple[Path, Log], record_property: Callable[[str, object], None]
) -> None:
    project, log = full_log
    engine = warehouse_engine(project / "warehouse.duckdb", read_only=True)
    try:
        summary = clv.summarize(engine)
    finally:
        engine.close()
    started = time.perf_counter()
    bgnbd = clv.fit_bgnbd(summary.frequency, summary.recency, summary.age)
    gamma_gamma = clv.fit_gamma_gamma(summary.frequency, summary.mean_spend)
    seconds = time.perf_counter() - started
    # Printed, never asserted (issue 16 asks for under 2 s on this machine).
    record_property("full_log_fit_seconds", round(seconds, 3))
    print(f"BG/NBD + Gamma-Gamma on {summary.n:,} customers: {seconds:.2f} s")
    assert summary.n == 23_570
    # Repeat purchase days from the file: distinct (customer, day) pairs less first days.
    assert (
        summary.frequency.sum()
        == len(np.unique(np.column_stack([log.customer, log.date]), axis=0)) - 23_570
    )
    assert bgnbd.converged
    assert gamma_gamma.converged
    # One repeat buyer's repeat purchases total $0: outside the Gamma-Gamma fit.
    zero = (summary.frequency > 0) & (summary.mean_spend == 0)
    assert gamma_gamma.n == int(np.sum(summary.frequency > 0)) - int(zero.sum())
    # The optimum: the closed-form gradient vanishes there (relative to the LL's size).
    x, t_x, big_t = summary.frequency, summary.recency, summary.age
    gradient = clv.bgnbd_gradient(np.array(bgnbd.params), x, t_x, big_t).sum(axis=0)
    assert np.all(np.abs(gradient * np.array(bgnbd.params)) < 1e-2)
