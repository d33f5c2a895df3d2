"""The simulator against its contract and its truth manifest.

Every check reads the written files with DuckDB, independently of the simulator's code.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from scipy import stats

from productlens.ingest.contracts import CONTRACTS
from productlens.simulate import generate, preset

LARGE = preset(users=40_000, days=90, seed=2024)
TABLES = tuple(CONTRACTS)


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def world_db(folder: Path) -> duckdb.DuckDBPyConnection:
    """A connection with one view per table of the written world."""
    con = duckdb.connect()
    for table in TABLES:
        pattern = "*/*.parquet" if table == "events" else "*.parquet"
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{folder}/{table}/{pattern}', "
            "hive_partitioning = false)"
        )
    return con


def one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:  # type: ignore[type-arg]
    return tuple(con.execute(sql).fetchall()[0])


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("large")
    generate(LARGE, out, workers=2)
    return out


@pytest.fixture(scope="module")
def db(large: Path) -> duckdb.DuckDBPyConnection:
    return world_db(large)


@pytest.fixture(scope="module")
def truth(large: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((large / "truth.json").read_text())


# --- the contract -----------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_every_table_matches_the_contract(db: duckdb.DuckDBPyConnection, table: str) -> None:
    described = db.execute(f"DESCRIBE {table}").fetchall()
    contract = CONTRACTS[table]
    assert tuple(row[0] for row in described) == contract.column_names
    types = {row[0]: row[1] for row in described}
    for column in contract.columns:
        assert types[column.name] == column.type, column.name
    key = ", ".join(contract.key)
    assert one(
        db, f"SELECT count(*) FROM (SELECT {key} FROM {table} GROUP BY ALL HAVING count(*) > 1)"
    ) == (0,)
    assert one(db, f"SELECT count(*) FROM {table}")[0] > 0
    for column in contract.columns:
        if column.required:
            assert one(db, f"SELECT count(*) FROM {table} WHERE {column.name} IS NULL") == (0,), (
                column.name
            )


def test_manifest_counts_match_the_files(db: duckdb.DuckDBPyConnection, truth: dict) -> None:  # type: ignore[type-arg]
    for table in TABLES:
        assert one(db, f"SELECT count(*) FROM {table}") == (truth["rows"][table],), table
    by_type = dict(db.execute("SELECT event_type, count(*) FROM events GROUP BY 1").fetchall())
    assert by_type == truth["event_types"]


def test_default_size_is_the_checkout_test_scale(tmp_path: Path) -> None:
    params = preset()
    assert params.users == 10_000
    result = generate(params, tmp_path, workers=2)
    assert 1_200_000 <= result.rows["events"] <= 1_800_000


# --- referential integrity and agreement between tables ---------------------------------


@pytest.mark.parametrize("scenario", ["ecommerce", "saas"])
def test_no_event_after_the_last_day(scenario: str, tmp_path: Path) -> None:
    """A world of N days ends with its last day: a session started just before the end
    is over by then (a tail day after it read as a drop in every "last week" figure).
    A short, busy world: without the rule each has a dozen events past the end."""
    params = preset(scenario, users=4000, days=7, seed=5)
    generate(params, tmp_path, workers=1)
    before, after, latest = one(
        world_db(tmp_path),
        f"SELECT count(*) FILTER (WHERE event_ts < TIMESTAMP '{params.start}'), "
        f"count(*) FILTER (WHERE event_ts >= TIMESTAMP '{params.end}'), max(event_ts) FROM events",
    )
    assert (before, after) == (0, 0)
    # Sessions still run up to the end: the last minutes are not left empty.
    assert latest >= params.end - timedelta(minutes=10)


def test_referential_integrity(db: duckdb.DuckDBPyConnection) -> None:
    checks = {
        "events without a user": "SELECT count(*) FROM events e ANTI JOIN users u USING (user_id)",
        "events before signup (beyond clock skew)": "SELECT count(*) FROM events e JOIN users u "
        "USING (user_id) WHERE e.event_ts < u.signup_ts - INTERVAL 2 MINUTE",
        "orders without a user": "SELECT count(*) FROM orders o ANTI JOIN users u USING (user_id)",
        "items without an order": "SELECT count(*) FROM order_items i "
        "ANTI JOIN orders o USING (order_id)",
        "items without a product version at order time": "SELECT count(*) FROM order_items i "
        "JOIN orders o USING (order_id) WHERE NOT EXISTS (SELECT 1 FROM products p WHERE "
        "p.product_id = i.product_id AND p.updated_at <= o.order_ts)",
        "events naming an unknown product": "SELECT count(*) FROM events e WHERE product_id IS "
        "NOT NULL AND product_id NOT IN (SELECT product_id FROM products)",
        "orders from an unknown campaign": "SELECT count(*) FROM orders WHERE campaign_id IS NOT "
        "NULL AND campaign_id NOT IN (SELECT campaign_id FROM campaigns)",
        "assignments without a user": "SELECT count(*) FROM assignments "
        "ANTI JOIN users USING (user_id)",
        "subscriptions without a user": "SELECT count(*) FROM subscriptions "
        "ANTI JOIN users USING (user_id)",
        "user changes without a user": "SELECT count(*) FROM user_changes "
        "ANTI JOIN users USING (user_id)",
    }
    for name, sql in checks.items():
        assert one(db, sql) == (0,), name


def test_orders_agree_with_purchase_events_and_items(db: duckdb.DuckDBPyConnection) -> None:
    mismatches = one(
        db,
        "SELECT count(*) FROM orders o FULL JOIN (SELECT json_extract_string(properties, "
        "'$.order_id') AS order_id, user_id, event_ts, amount FROM events WHERE event_type = "
        "'purchase') e USING (order_id) WHERE o.user_id IS DISTINCT FROM e.user_id OR "
        "o.order_ts IS DISTINCT FROM e.event_ts OR o.total_amount IS DISTINCT FROM e.amount",
    )
    assert mismatches == (0,)
    off_by_more_than_a_cent = one(
        db,
        "SELECT count(*) FROM orders o JOIN (SELECT order_id, sum(quantity * unit_price) AS s "
        "FROM order_items GROUP BY 1) i USING (order_id) WHERE abs(o.total_amount - i.s) > 0.005",
    )
    assert off_by_more_than_a_cent == (0,)
    statuses = dict(db.execute("SELECT status, count(*) FROM orders GROUP BY 1").fetchall())
    assert set(statuses) == {"completed", "cancelled", "refunded"}
    assert statuses["cancelled"] + statuses["refunded"] < 0.15 * sum(statuses.values())


def test_items_are_priced_at_the_version_valid_at_order_time(db: duckdb.DuckDBPyConnection) -> None:
    wrong = one(
        db,
        "SELECT count(*) FROM order_items i JOIN orders o USING (order_id) "
        "ASOF JOIN products p ON p.product_id = i.product_id AND p.updated_at <= o.order_ts "
        "WHERE i.unit_price <> p.price",
    )
    # Carts are priced when the session starts; a price change in between is rare.
    n = one(db, "SELECT count(*) FROM order_items")[0]
    assert wrong[0] < 0.002 * n
    versions = one(db, "SELECT count(*) / count(DISTINCT product_id) FROM products")[0]
    assert versions > 1.5
    margins = db.execute(
        "SELECT category, avg(1 - cost / price) FROM products GROUP BY 1 ORDER BY 2"
    ).fetchall()
    assert margins[-1][1] - margins[0][1] > 0.3  # margins differ by category


# --- behaviour --------------------------------------------------------------------------


def _funnel_sessions(db: duckdb.DuckDBPyConnection, by: str) -> dict[tuple[str, str], int]:
    rows = db.execute(
        f"SELECT {by}, event_type, count(DISTINCT session_id) FROM events GROUP BY ALL"
    ).fetchall()
    return {(str(k), t): n for k, t, n in rows}


def test_funnel_falls_step_by_step_and_rates_differ_as_planted(
    db: duckdb.DuckDBPyConnection,
) -> None:
    steps = LARGE.funnel_steps
    by_device = _funnel_sessions(db, "device")
    for device in ("web", "mobile"):
        counts = [by_device[(device, s)] for s in steps]
        assert counts == sorted(counts, reverse=True), (device, counts)
        assert counts[-1] > 0
    rate = {d: by_device[(d, "purchase")] / by_device[(d, "page_view")] for d in ("web", "mobile")}
    assert rate["web"] > 1.3 * rate["mobile"]
    by_country = _funnel_sessions(db, "country")
    conversion = {
        c: by_country[(c, "purchase")] / by_country[(c, "page_view")] for c in LARGE.countries
    }
    assert conversion["US"] > conversion["DE"] > conversion["IN"]
    overall = _funnel_sessions(db, "'all'")
    totals = [overall[("all", s)] for s in steps]
    assert totals == sorted(totals, reverse=True)


def test_repeats_noise_and_abandoned_carts(db: duckdb.DuckDBPyConnection) -> None:
    repeated = one(
        db,
        "SELECT count(*) FROM (SELECT session_id FROM events WHERE event_type = "
        "'checkout_start' GROUP BY 1 HAVING count(*) > 1)",
    )[0]
    assert repeated > 0
    out_of_order = one(
        db,
        "SELECT count(*) FROM (SELECT session_id, event_type, event_ts, lag(event_ts) OVER "
        "(PARTITION BY session_id ORDER BY event_ts) AS prev, min(event_ts) FILTER (WHERE "
        "event_type = 'add_to_cart') OVER (PARTITION BY session_id) AS cart_ts, min(event_ts) "
        "FILTER (WHERE event_type = 'product_view') OVER (PARTITION BY session_id) AS view_ts "
        "FROM events) WHERE cart_ts < view_ts",
    )[0]
    assert out_of_order > 0  # some carts are logged before the view (clock skew)
    abandoned = one(
        db,
        "SELECT count(*) FROM (SELECT session_id FROM events GROUP BY 1 HAVING "
        "bool_or(event_type = 'add_to_cart') AND NOT bool_or(event_type = 'purchase'))",
    )[0]
    assert abandoned > one(db, "SELECT count(*) FROM orders")[0]


def test_retention_drops_after_day_one_then_decays(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute(
        "WITH active AS (SELECT DISTINCT e.user_id, date_diff('day', CAST(u.signup_ts AS DATE), "
        "CAST(e.event_ts AS DATE)) AS k FROM events e JOIN users u USING (user_id) "
        "WHERE u.signup_ts < TIMESTAMP '2026-02-05') "
        "SELECT k, count(*) FROM active WHERE k IN (0, 1, 7, 30) GROUP BY k ORDER BY k"
    ).fetchall()
    share = {k: n / rows[0][1] for k, n in rows}
    assert share[1] < 0.5  # a sharp drop after the first day
    assert share[1] > share[7] > share[30] > 0.02  # then a slow decay


def test_weekly_seasonality_and_trend(db: duckdb.DuckDBPyConnection) -> None:
    by_weekday = dict(
        db.execute("SELECT isodow(signup_ts), count(*) FROM users GROUP BY 1").fetchall()
    )
    weekend = (by_weekday[6] + by_weekday[7]) / 2
    weekday = sum(by_weekday[d] for d in range(1, 6)) / 5
    assert weekend < 0.92 * weekday
    first, last = one(
        db,
        "SELECT count(*) FILTER (WHERE signup_ts < TIMESTAMP '2026-02-05'), count(*) FILTER "
        "(WHERE signup_ts >= TIMESTAMP '2026-03-05') FROM users WHERE campaign_id IS NULL",
    )
    assert last > 1.2 * first  # signups trend upwards


def test_engagement_raises_purchase_and_revenue_is_heavy_tailed(
    db: duckdb.DuckDBPyConnection,
) -> None:
    low, high = one(
        db,
        "WITH s AS (SELECT session_id, count(*) FILTER (WHERE event_type = 'product_view') AS "
        "views, bool_or(event_type = 'purchase') AS bought FROM events GROUP BY 1) "
        "SELECT avg(bought::INT) FILTER (WHERE views BETWEEN 1 AND 3), "
        "avg(bought::INT) FILTER (WHERE views >= 10) FROM s",
    )
    assert high > 1.3 * low
    top_share = one(
        db,
        "WITH r AS (SELECT user_id, sum(total_amount) AS revenue FROM orders GROUP BY 1), "
        "ranked AS (SELECT revenue, ntile(10) OVER (ORDER BY revenue DESC) AS decile FROM r) "
        "SELECT sum(revenue) FILTER (WHERE decile = 1) / sum(revenue) FROM ranked",
    )[0]
    assert top_share > 0.35  # the top tenth of buyers earns over a third of revenue


def test_campaign_spend_drives_signups_and_roi_differs(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute(
        "SELECT c.campaign_id, c.spend, count(DISTINCT u.user_id) AS signups, "
        "coalesce(sum(o.total_amount), 0) AS revenue FROM campaigns c "
        "LEFT JOIN users u USING (campaign_id) LEFT JOIN orders o ON o.user_id = u.user_id "
        "GROUP BY 1, 2"
    ).fetchall()
    spend = [r[1] for r in rows]
    signups = [r[2] for r in rows]
    assert stats.spearmanr(spend, signups).statistic > 0.5
    roi = [r[3] / r[1] for r in rows if r[1] > 0]
    assert max(roi) > 2 * min(roi)
    channels = one(db, "SELECT count(DISTINCT acquisition_channel) FROM users")[0]
    assert channels >= 6


def test_segments_change_over_time(db: duckdb.DuckDBPyConnection) -> None:
    moved = one(
        db, "SELECT count(DISTINCT user_id) / (SELECT count(*) FROM users) FROM user_changes"
    )[0]
    assert 0.1 < moved < 0.25
    unchanged = one(
        db,
        "SELECT count(*) FROM (SELECT user_id, changed_at, segment, country, lag(segment) OVER w "
        "AS prev_segment, lag(country) OVER w AS prev_country FROM (SELECT user_id, signup_ts AS "
        "changed_at, segment, country FROM users UNION ALL SELECT * FROM user_changes) "
        "WINDOW w AS (PARTITION BY user_id ORDER BY changed_at)) "
        "WHERE prev_segment = segment AND prev_country = country",
    )
    assert unchanged == (0,)  # every change changes something


def test_subscriptions_form_consistent_histories(db: duckdb.DuckDBPyConnection) -> None:
    broken = one(
        db,
        "SELECT count(*) FROM (SELECT *, lead(started_at) OVER (PARTITION BY user_id ORDER BY "
        "started_at) AS next_start FROM subscriptions) WHERE (next_start IS NOT NULL AND "
        "ended_at IS DISTINCT FROM next_start) OR (cancelled_at IS NOT NULL AND "
        "(ended_at < cancelled_at OR next_start IS NOT NULL)) OR started_at >= ended_at",
    )
    assert broken == (0,)
    moves = one(
        db,
        "SELECT count(*) FILTER (WHERE amount > prev), count(*) FILTER (WHERE amount < prev), "
        "count(*) FILTER (WHERE cancelled_at IS NOT NULL) FROM (SELECT amount, lag(amount) "
        "OVER (PARTITION BY user_id ORDER BY started_at) AS prev, cancelled_at FROM subscriptions)",
    )
    assert all(n > 0 for n in moves)  # upgrades, downgrades and cancellations all occur
    assert {
        r[0] for r in db.execute("SELECT DISTINCT billing_period FROM subscriptions").fetchall()
    } == {"monthly", "annual"}


def test_inventory_falls_with_sales_and_jumps_on_restock(db: duckdb.DuckDBPyConnection) -> None:
    falls, jumps = one(
        db,
        "SELECT count(*) FILTER (WHERE on_hand < prev), count(*) FILTER (WHERE on_hand > prev) "
        "FROM (SELECT on_hand, lag(on_hand) OVER (PARTITION BY product_id ORDER BY "
        "snapshot_date) AS prev FROM inventory)",
    )
    assert falls > 5 * jumps > 0
    sold_vs_fall = one(
        db,
        "WITH sold AS (SELECT i.product_id, CAST(o.order_ts AS DATE) AS d, sum(quantity) AS n "
        "FROM order_items i JOIN orders o USING (order_id) WHERE o.status <> 'cancelled' "
        "GROUP BY ALL) SELECT corr(s.n, inv.prev - inv.on_hand) FROM (SELECT product_id, "
        "snapshot_date, on_hand, lag(on_hand) OVER (PARTITION BY product_id ORDER BY "
        "snapshot_date) AS prev FROM inventory) inv JOIN sold s ON s.product_id = "
        "inv.product_id AND s.d = inv.snapshot_date WHERE inv.on_hand <= inv.prev",
    )[0]
    assert sold_vs_fall > 0.9


# --- experiments ------------------------------------------------------------------------


def _readout(db: duckdb.DuckDBPyConnection, experiment: str, metric: str, window: int) -> dict:  # type: ignore[type-arg]
    """Per variant: exposed users and those with the metric event within the window."""
    rows = db.execute(
        f"SELECT a.variant, count(*) AS n, count(*) FILTER (WHERE EXISTS (SELECT 1 FROM events "
        f"e WHERE e.user_id = a.user_id AND e.event_type = '{metric}' AND e.event_ts >= "
        f"a.assigned_ts AND e.event_ts < a.assigned_ts + INTERVAL {window} DAY)) AS converted "
        f"FROM assignments a WHERE a.experiment_id = '{experiment}' GROUP BY 1"
    ).fetchall()
    return {variant: (n, converted) for variant, n, converted in rows}


def _two_proportion(readout: dict) -> tuple[float, float]:  # type: ignore[type-arg]
    n_c, x_c = readout["control"]
    n_t, x_t = readout["treatment"]
    p_c, p_t = x_c / n_c, x_t / n_t
    return p_t - p_c, math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)


def test_planted_lift_is_recovered_within_sampling_error(
    db: duckdb.DuckDBPyConnection, truth: dict
) -> None:  # type: ignore[type-arg]
    planted = truth["experiments"]["exp_checkout_redesign"]
    assert planted["true_absolute_lift"] > 0.02
    diff, se = _two_proportion(_readout(db, "exp_checkout_redesign", "purchase", 7))
    assert abs(diff - planted["true_absolute_lift"]) < 3 * se
    # The world is built so that the planted effect is detectable: its true size is well
    # above the standard error, and this sample shows it at the 5% level. (Asking the
    # estimate itself for 3 standard errors would fail for about half of all seeds.)
    assert planted["true_absolute_lift"] / se > 2.5
    assert diff / se > 1.96
    tiny = truth["experiments"]["exp_pdp_redesign"]
    assert abs(tiny["true_relative_lift"]) < 0.01
    diff, se = _two_proportion(_readout(db, "exp_pdp_redesign", "add_to_cart", 7))
    assert abs(diff - tiny["true_absolute_lift"]) < 3 * se


def test_exposure_is_at_the_exposure_event_with_a_pre_period(db: duckdb.DuckDBPyConnection) -> None:
    not_at_exposure = one(
        db,
        "SELECT count(*) FROM assignments a JOIN experiments x USING (experiment_id) WHERE NOT "
        "EXISTS (SELECT 1 FROM events e WHERE e.user_id = a.user_id AND e.event_ts = "
        "a.assigned_ts AND e.event_type = x.exposure_event) OR a.assigned_ts < x.start_ts OR "
        "a.assigned_ts >= x.end_ts",
    )
    assert not_at_exposure == (0,)
    with_pre_period = one(
        db,
        "SELECT avg((u.signup_ts < x.start_ts)::INT) FROM assignments a JOIN users u "
        "USING (user_id) JOIN experiments x USING (experiment_id)",
    )[0]
    assert with_pre_period > 0.2
    # The pre-period carries signal for CUPED: earlier purchases predict the outcome.
    correlation = one(
        db,
        "WITH w AS (SELECT a.user_id, a.assigned_ts, count(*) FILTER (WHERE e.event_ts < "
        "a.assigned_ts AND e.event_type = 'purchase') AS pre, count(*) FILTER (WHERE "
        "e.event_ts >= a.assigned_ts AND e.event_ts < a.assigned_ts + INTERVAL 7 DAY AND "
        "e.event_type = 'purchase') AS post FROM assignments a JOIN events e USING (user_id) "
        "WHERE a.experiment_id = 'exp_checkout_redesign' GROUP BY 1, 2) "
        "SELECT corr(pre, post) FROM w",
    )[0]
    assert correlation > 0.1


def _srm_pvalue(db: duckdb.DuckDBPyConnection) -> float:
    counts = dict(
        db.execute(
            "SELECT variant, count(*) FROM assignments WHERE experiment_id = "
            "'exp_checkout_redesign' GROUP BY 1"
        ).fetchall()
    )
    observed = [counts["control"], counts["treatment"]]
    return float(stats.chisquare(observed).pvalue)


def test_srm_detected_only_when_planted(db: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    assert _srm_pvalue(db) > 0.01
    generate(LARGE.with_srm(0.08), tmp_path, workers=2)
    planted = world_db(tmp_path)
    assert _srm_pvalue(planted) < 0.001


# --- determinism, formats, scenarios, dirty mode ----------------------------------------


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    params = preset(users=3000, days=21, seed=11, users_per_block=1000)
    generate(params, tmp_path / "one", workers=1)
    generate(params, tmp_path / "two", workers=2)
    first = digest(tmp_path / "one")
    assert len(first) > 20
    assert digest(tmp_path / "two") == first
    generate(preset(users=3000, days=21, seed=12, users_per_block=1000), tmp_path / "other")
    assert digest(tmp_path / "other") != first


def test_text_formats_hold_the_same_rows(tmp_path: Path) -> None:
    params = preset(users=300, days=7, seed=3)
    generate(params, tmp_path / "p")
    generate(params, tmp_path / "c", fmt="csv")
    generate(params, tmp_path / "j", fmt="jsonl")
    query = "SELECT count(*), count(DISTINCT event_id), round(sum(amount), 2) FROM {}"

    def summary(source: str) -> tuple[object, ...]:
        return tuple(duckdb.sql(query.format(source)).fetchall()[0])

    expected = summary(f"'{tmp_path}/p/events/*/*.parquet'")
    assert summary(f"read_csv('{tmp_path}/c/events/*/*.csv')") == expected
    assert summary(f"read_json('{tmp_path}/j/events/*/*.jsonl')") == expected


def test_saas_scenario(tmp_path: Path) -> None:
    generate(preset("saas", users=4000, days=60, seed=5), tmp_path, workers=2)
    db = world_db(tmp_path)
    types = {r[0] for r in db.execute("SELECT DISTINCT event_type FROM events").fetchall()}
    assert {"login", "create_project", "export", "invite", "upgrade"} <= types
    upgrades = one(db, "SELECT count(*) FROM events WHERE event_type = 'upgrade'")[0]
    assert one(db, "SELECT count(*) FROM subscriptions")[0] >= upgrades > 50
    plans = {r[0] for r in db.execute("SELECT DISTINCT plan FROM subscriptions").fetchall()}
    assert plans == {"starter", "pro", "business"}
    seats = one(
        db,
        "SELECT count(*) FROM subscriptions s JOIN products p ON p.product_id = s.plan "
        "WHERE s.billing_period = 'monthly' AND s.amount > p.price",
    )[0]
    assert seats > 0  # seats beyond the first raise the amount
    assert one(db, "SELECT count(*) FROM orders") == (0,)


def test_dirty_mode_counts_equal_the_manifest(tmp_path: Path) -> None:
    generate(preset(users=6000, days=30, seed=9, dirty=True), tmp_path, workers=2)
    faults = json.loads((tmp_path / "truth.json").read_text())["dirty"]
    con = duckdb.connect()
    con.execute(
        f"CREATE VIEW ev AS SELECT *, filename FROM read_parquet('{tmp_path}/events/*/*.parquet', "
        "filename = true, hive_partitioning = false)"
    )
    con.execute(f"CREATE VIEW orders AS SELECT * FROM '{tmp_path}/orders/*.parquet'")
    con.execute(f"CREATE VIEW products AS SELECT * FROM '{tmp_path}/products/*.parquet'")
    measured = {
        "null_key": "SELECT count(*) FROM ev WHERE event_id IS NULL OR user_id IS NULL",
        "bad_timestamp": "SELECT count(*) FROM ev WHERE try_cast(event_ts AS TIMESTAMP) IS NULL",
        "future_timestamp": "SELECT count(*) FROM ev WHERE try_cast(event_ts AS TIMESTAMP) > "
        "TIMESTAMP '2090-01-01'",
        "negative_amount": "SELECT count(*) FROM ev WHERE amount < 0",
        "unknown_product": "SELECT count(*) FROM ev WHERE product_id NOT IN "
        "(SELECT product_id FROM products)",
        "duplicate": "SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT * EXCLUDE "
        "(filename) FROM ev)) FROM ev",
    }
    expected = faults["faults"]["events"]
    for fault, sql in measured.items():
        assert one(con, sql) == (expected[fault],), fault
        assert expected[fault] > 0, fault
    late = one(
        con,
        "SELECT count(*) FROM ev WHERE try_cast(event_ts AS TIMESTAMP) < TIMESTAMP '2090-01-01' "
        "AND CAST(regexp_extract(filename, 'event_date=([0-9-]+)', 1) AS DATE) > "
        "CAST(try_cast(event_ts AS TIMESTAMP) AS DATE)",
    )
    assert late == (faults["late_arriving_events"],)
    order_faults = faults["faults"]["orders"]
    assert one(con, "SELECT count(*) FROM orders WHERE order_id IS NULL") == (
        order_faults["null_key"],
    )
    assert one(con, "SELECT count(*) FROM orders WHERE total_amount < 0") == (
        order_faults["negative_amount"],
    )
    assert one(con, "SELECT count(*) - count(DISTINCT orders) FROM orders") == (
        order_faults["duplicate"],
    )


def test_assignments_stay_inside_the_experiment_window(tmp_path: Path) -> None:
    """Exposure is decided per session, but the exposure event can land after the window
    (a session running past its end) or before it (a clock running behind). The windows
    here end ten days before the world does (a session cannot run past the world's end),
    so such exposures occur; they must not be logged, and the truth must count exactly
    the users that were."""
    world = preset(users=40_000, days=90, seed=2024, users_per_block=20_000)
    shorter = tuple(replace(e, duration_days=e.duration_days - 10) for e in world.experiments)
    generate(replace(world, experiments=shorter), tmp_path)
    db = world_db(tmp_path)
    outside = one(
        db,
        "SELECT count(*) FROM assignments a JOIN experiments x USING (experiment_id) "
        "WHERE a.assigned_ts < x.start_ts OR a.assigned_ts >= x.end_ts OR NOT EXISTS ("
        "SELECT 1 FROM events e WHERE e.user_id = a.user_id AND e.event_ts = a.assigned_ts "
        "AND e.event_type = x.exposure_event)",
    )
    assert outside == (0,)
    late_sessions = one(
        db,
        "SELECT count(*) FROM events e JOIN experiments x ON e.event_type = x.exposure_event "
        "WHERE e.event_ts >= x.end_ts AND e.event_ts < x.end_ts + INTERVAL 10 MINUTE",
    )
    assert late_sessions[0] > 0  # exposure events just after the window do exist
    truth = json.loads((tmp_path / "truth.json").read_text())
    logged = dict(
        db.execute("SELECT experiment_id, count(*) FROM assignments GROUP BY 1").fetchall()
    )
    for experiment, entry in truth["experiments"].items():
        if entry["srm_lost_share"] == 0:
            assert entry["n_exposed"] == logged[experiment], experiment
