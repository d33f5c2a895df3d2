-- One row per user, event type and day: how many events of that type the user did that
-- day, the first and the last, and every instant in time order. The ordered funnel
-- reads its first step here on DuckDB: one row per user-day instead of one per event,
-- and the day's instants only when a later step falls inside the day.
with events as (
    select * from fct_events
),

final as (
    select
        event_type,
        user_id,
        event_date,
        count(*) as n_events,
        min(event_ts) as first_ts,
        max(event_ts) as last_ts,
        list_sort(list(event_ts)) as event_times
    from events
    group by event_type, user_id, event_date
)

select * from final
