"""dim_date: one row per day over the data's span, with week (configurable start), ISO
week, month, quarter, year and weekday flags: the calendar analysts otherwise keep in a
spreadsheet. The spine is a digits cross join (portable; no generate_series)."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from productlens.modeling import ModelContext

# isodow of the first day of the week: Monday 1 ... Sunday 7.
WEEK_START_DOW = {"monday": 1, "sunday": 7}

TEMPLATE = """
with users as (
    select * from stg_users
),

events as (
    select * from stg_events
),

orders as (
    select * from stg_orders
),

inventory as (
    select * from stg_inventory
),

all_days as (
    select cast(signup_ts as date) as day from users
    union all
    select cast(event_ts as date) as day from events
    union all
    select cast(order_ts as date) as day from orders
    union all
    select snapshot_date as day from inventory
),

bounds as (
    select min(day) as first_day, max(day) as last_day from all_days
),

digits as (
    select * from (values (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)) as t (n)
),

numbers as (
    select a.n + 10 * b.n + 100 * c.n + 1000 * d.n + 10000 * e.n as n
    from digits as a
    cross join digits as b
    cross join digits as c
    cross join digits as d
    cross join digits as e
),

days as (
    select cast(bounds.first_day + numbers.n as date) as date_day
    from bounds
    inner join numbers on numbers.n <= bounds.last_day - bounds.first_day
),

final as (
    select
        date_day,
        cast(
            date_day - cast((isodow(date_day) - {start_dow} + 7) % 7 as integer) as date
        ) as week_start_date,
        cast(extract(isoyear from date_day) as integer) as iso_year,
        cast(extract(week from date_day) as integer) as iso_week,
        cast(date_trunc('month', date_day) as date) as month_start_date,
        cast(extract(month from date_day) as integer) as month_of_year,
        cast(date_trunc('quarter', date_day) as date) as quarter_start_date,
        cast(extract(quarter from date_day) as integer) as quarter_of_year,
        cast(extract(year from date_day) as integer) as year_number,
        cast(isodow(date_day) as integer) as iso_day_of_week,
        isodow(date_day) in (6, 7) as is_weekend
    from days
)

select * from final
"""


def model(ctx: ModelContext) -> exp.Query:
    start_dow = WEEK_START_DOW[ctx.week_start]  # an int from a fixed table, not user text
    query = sqlglot.parse_one(TEMPLATE.format(start_dow=start_dow), read="duckdb")
    assert isinstance(query, exp.Query)
    return query
