"""The raw data contract (DESIGN.md) as data: one `Contract` per raw table.

Times are UTC timestamps without a zone. Every raw table also carries lineage columns
(`_batch_id`, `_source_file`, `_row_number`, `_ingested_at`) so any row can be traced to
the file and line it came from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One contract column: its type, whether it must be present and non-null, and the
    checks ingestion applies to it."""

    name: str
    type: str
    required: bool = True
    accepted: tuple[str, ...] = ()  # allowed values, when the contract fixes them
    non_negative: bool = False  # amounts, prices, quantities
    references: str | None = None  # "table.column" that must exist (see ingest config)
    scheduled: bool = False  # a planned time (an end date), which may lie in the future


@dataclass(frozen=True)
class Contract:
    """One raw table: its columns in order, and the columns that form its key."""

    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


LINEAGE_COLUMNS = (
    ("_batch_id", "VARCHAR"),
    ("_source_file", "VARCHAR"),
    ("_row_number", "BIGINT"),
    ("_ingested_at", "TIMESTAMP"),
)


def _c(name: str, type_: str = "VARCHAR", **checks: object) -> Column:
    return Column(name, type_, True, **checks)  # type: ignore[arg-type]


def _opt(name: str, type_: str = "VARCHAR", **checks: object) -> Column:
    return Column(name, type_, False, **checks)  # type: ignore[arg-type]


USER = "users.user_id"
PRODUCT = "products.product_id"


CONTRACTS: dict[str, Contract] = {
    c.table: c
    for c in (
        Contract(
            "events",
            (
                _c("event_id"),
                _c("user_id", references=USER),
                _opt("session_id"),
                _c("event_type"),
                _c("event_ts", "TIMESTAMP"),
                _opt("device"),
                _opt("country"),
                _opt("product_id", references=PRODUCT),
                _opt("amount", "DOUBLE", non_negative=True),
                _opt("properties"),
            ),
            ("event_id",),
        ),
        Contract(
            "users",
            (
                _c("user_id"),
                _c("signup_ts", "TIMESTAMP"),
                _opt("country"),
                _opt("device"),
                _opt("acquisition_channel"),
                _opt("campaign_id"),
                _opt("segment"),
            ),
            ("user_id",),
        ),
        Contract(
            "user_changes",
            (
                _c("user_id", references=USER),
                _c("changed_at", "TIMESTAMP"),
                _opt("segment"),
                _opt("country"),
            ),
            ("user_id", "changed_at"),
        ),
        Contract(
            "products",
            (
                _c("product_id"),
                _opt("name"),
                _opt("category"),
                _opt("brand"),
                _c("price", "DOUBLE", non_negative=True),
                _opt("cost", "DOUBLE", non_negative=True),
                _c("updated_at", "TIMESTAMP"),
            ),
            ("product_id", "updated_at"),
        ),
        Contract(
            "orders",
            (
                _c("order_id"),
                _c("user_id", references=USER),
                _c("order_ts", "TIMESTAMP"),
                _c("status", accepted=("completed", "cancelled", "refunded", "pending")),
                _c("total_amount", "DOUBLE", non_negative=True),
                _opt("campaign_id"),
            ),
            ("order_id",),
        ),
        Contract(
            "order_items",
            (
                _c("order_id", references="orders.order_id"),
                _c("line_no", "INTEGER"),
                _c("product_id", references=PRODUCT),
                _c("quantity", "INTEGER", non_negative=True),
                _c("unit_price", "DOUBLE", non_negative=True),
            ),
            ("order_id", "line_no"),
        ),
        Contract(
            "subscriptions",
            (
                _c("subscription_id"),
                _c("user_id", references=USER),
                _c("plan"),
                _c("billing_period", accepted=("monthly", "annual")),
                _c("amount", "DOUBLE", non_negative=True),
                _c("started_at", "TIMESTAMP"),
                _opt("cancelled_at", "TIMESTAMP"),
                _opt("ended_at", "TIMESTAMP", scheduled=True),
            ),
            ("subscription_id",),
        ),
        Contract(
            "campaigns",
            (
                _c("campaign_id"),
                _opt("name"),
                _opt("channel"),
                _c("start_date", "DATE"),
                _opt("end_date", "DATE"),
                _c("spend", "DOUBLE", non_negative=True),
            ),
            ("campaign_id",),
        ),
        Contract(
            "inventory",
            (
                _c("snapshot_date", "DATE"),
                _c("product_id", references=PRODUCT),
                _c("on_hand", "INTEGER", non_negative=True),
            ),
            ("snapshot_date", "product_id"),
        ),
        Contract(
            "experiments",
            (
                _c("experiment_id"),
                _opt("name"),
                _opt("hypothesis"),
                _c("variants"),
                _c("start_ts", "TIMESTAMP"),
                _opt("end_ts", "TIMESTAMP", scheduled=True),
                _c("exposure_event"),
                _opt("primary_metric"),
                _opt("outcome_window_days", "INTEGER"),
            ),
            ("experiment_id",),
        ),
        Contract(
            "assignments",
            (
                _c("experiment_id", references="experiments.experiment_id"),
                _c("user_id", references=USER),
                _c("variant"),
                _c("assigned_ts", "TIMESTAMP"),
            ),
            ("experiment_id", "user_id"),
        ),
    )
}


# Load order within one ingest run: referenced tables before the tables that use them.
LOAD_ORDER = (
    "users",
    "products",
    "campaigns",
    "experiments",
    "user_changes",
    "orders",
    "order_items",
    "subscriptions",
    "inventory",
    "assignments",
    "events",
)

# Reason codes a quarantined row can carry.
REASONS = {
    "malformed_line": "a line cannot be read as a row (broken quoting, too many or too few "
    "fields, not a JSON object); its text is kept",
    "null_key": "a key or id column is empty",
    "missing_value": "a required column is empty",
    "bad_type": "a value cannot be read as the contract's type",
    "bad_timestamp": "a time or date cannot be parsed",
    "future_timestamp": "a time is later than now plus the tolerance",
    "negative_amount": "an amount, price or quantity is below zero",
    "bad_value": "a value is not one the contract accepts",
    "duplicate": "the key already appeared earlier in this batch",
    "conflicting_duplicate": "the key is already loaded with different values",
    "unknown_user": "the user has not been loaded",
    "unknown_product": "the product has not been loaded",
    "unknown_order": "the order has not been loaded",
    "unknown_experiment": "the experiment has not been loaded",
}


def reference_reason(references: str) -> str:
    """`users.user_id` -> `unknown_user`."""
    return "unknown_" + references.split(".", 1)[0].removesuffix("s")
