"""The raw data contract (DESIGN.md) as data: one `Contract` per raw table.

Times are UTC timestamps without a zone. Every raw table also carries lineage columns
(`_batch_id`, `_source_file`, `_row_number`, `_ingested_at`) so any row can be traced to
the file and line it came from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = True


@dataclass(frozen=True)
class Contract:
    """One raw table: its columns in order, and the columns that form its key."""

    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def ddl(self) -> str:
        cols = [f"{c.name} {c.type}" for c in self.columns]
        cols += [f"{name} {type_}" for name, type_ in LINEAGE_COLUMNS]
        return f"CREATE TABLE IF NOT EXISTS raw.{self.table} (\n  " + ",\n  ".join(cols) + "\n)"


LINEAGE_COLUMNS = (
    ("_batch_id", "VARCHAR"),
    ("_source_file", "VARCHAR"),
    ("_row_number", "BIGINT"),
    ("_ingested_at", "TIMESTAMP"),
)


def _c(name: str, type_: str = "VARCHAR") -> Column:
    return Column(name, type_, required=True)


def _opt(name: str, type_: str = "VARCHAR") -> Column:
    return Column(name, type_, required=False)


CONTRACTS: dict[str, Contract] = {
    c.table: c
    for c in (
        Contract(
            "events",
            (
                _c("event_id"),
                _c("user_id"),
                _opt("session_id"),
                _c("event_type"),
                _c("event_ts", "TIMESTAMP"),
                _opt("device"),
                _opt("country"),
                _opt("product_id"),
                _opt("amount", "DOUBLE"),
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
            (_c("user_id"), _c("changed_at", "TIMESTAMP"), _opt("segment"), _opt("country")),
            ("user_id", "changed_at"),
        ),
        Contract(
            "products",
            (
                _c("product_id"),
                _opt("name"),
                _opt("category"),
                _opt("brand"),
                _c("price", "DOUBLE"),
                _opt("cost", "DOUBLE"),
                _c("updated_at", "TIMESTAMP"),
            ),
            ("product_id", "updated_at"),
        ),
        Contract(
            "orders",
            (
                _c("order_id"),
                _c("user_id"),
                _c("order_ts", "TIMESTAMP"),
                _c("status"),
                _c("total_amount", "DOUBLE"),
                _opt("campaign_id"),
            ),
            ("order_id",),
        ),
        Contract(
            "order_items",
            (
                _c("order_id"),
                _c("line_no", "INTEGER"),
                _c("product_id"),
                _c("quantity", "INTEGER"),
                _c("unit_price", "DOUBLE"),
            ),
            ("order_id", "line_no"),
        ),
        Contract(
            "subscriptions",
            (
                _c("subscription_id"),
                _c("user_id"),
                _c("plan"),
                _c("billing_period"),
                _c("amount", "DOUBLE"),
                _c("started_at", "TIMESTAMP"),
                _opt("cancelled_at", "TIMESTAMP"),
                _opt("ended_at", "TIMESTAMP"),
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
                _c("spend", "DOUBLE"),
            ),
            ("campaign_id",),
        ),
        Contract(
            "inventory",
            (_c("snapshot_date", "DATE"), _c("product_id"), _c("on_hand", "INTEGER")),
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
                _opt("end_ts", "TIMESTAMP"),
                _c("exposure_event"),
                _opt("primary_metric"),
                _opt("outcome_window_days", "INTEGER"),
            ),
            ("experiment_id",),
        ),
        Contract(
            "assignments",
            (_c("experiment_id"), _c("user_id"), _c("variant"), _c("assigned_ts", "TIMESTAMP")),
            ("experiment_id", "user_id"),
        ),
    )
}
