"""fct_sessions: one row per session. Events keep their session id; events without one
are sessionised per user by the inactivity rule (a gap longer than the configured
timeout, 30 minutes by default, starts a new session)."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from productlens.modeling import ModelContext

TEMPLATE = """
with events as (
    select * from fct_events
),

unkeyed as (
    select
        event_id,
        user_id,
        event_ts,
        event_type,
        device,
        lag(event_ts) over (partition by user_id order by event_ts, event_id) as previous_ts
    from events
    where session_id is null
),

numbered as (
    select
        user_id,
        event_ts,
        event_type,
        device,
        sum(
            case
                when previous_ts is null
                    or event_ts > previous_ts + interval ({timeout}) minute then 1
                else 0
            end
        ) over (
            partition by user_id order by event_ts, event_id
            rows between unbounded preceding and current row
        ) as session_no
    from unkeyed
),

keyed as (
    select
        session_id,
        user_id,
        event_ts,
        event_type,
        device,
        false as is_derived
    from events
    where session_id is not null
    union all
    select
        user_id || '#' || cast(session_no as varchar) as session_id,
        user_id,
        event_ts,
        event_type,
        device,
        true as is_derived
    from numbered
),

final as (
    select
        session_id,
        min(user_id) as user_id,
        min(event_ts) as session_start_ts,
        max(event_ts) as session_end_ts,
        cast(min(event_ts) as date) as session_date,
        epoch(max(event_ts)) - epoch(min(event_ts)) as duration_seconds,
        count(*) as n_events,
        count(distinct event_type) as n_event_types,
        min(device) as device,
        bool_or(is_derived) as is_derived
    from keyed
    group by session_id
)

select * from final
"""


def model(ctx: ModelContext) -> exp.Query:
    timeout = int(ctx.session_timeout_minutes)  # an int from validated configuration
    query = sqlglot.parse_one(TEMPLATE.format(timeout=timeout), read="duckdb")
    assert isinstance(query, exp.Query)
    return query
