-- One row per day: daily, weekly and monthly active users (distinct users active on the
-- day, in the trailing 7 and 30 days) and stickiness (DAU / MAU).
-- Trailing distinct counts use interval coverage: each active (user, day) covers the days
-- until the user's next active day, capped at 7 (or 30); the +1/-1 edges of those
-- intervals summed in day order give the count. Exact, and far faster than a range join.
with days as (
    select * from dim_date
),

events as (
    select * from fct_events
),

activity as (
    select distinct
        user_id,
        event_date as activity_date
    from events
),

spans as (
    select
        activity_date,
        lead(activity_date) over (
            partition by user_id order by activity_date
        ) as next_activity_date
    from activity
),

edges as (
    select
        activity_date as edge_date,
        1 as weekly_delta,
        1 as monthly_delta
    from spans
    union all
    select
        least(coalesce(next_activity_date, activity_date + 7), activity_date + 7) as edge_date,
        -1 as weekly_delta,
        0 as monthly_delta
    from spans
    union all
    select
        least(coalesce(next_activity_date, activity_date + 30), activity_date + 30) as edge_date,
        0 as weekly_delta,
        -1 as monthly_delta
    from spans
),

daily_edges as (
    select
        edge_date,
        sum(weekly_delta) as weekly_delta,
        sum(monthly_delta) as monthly_delta
    from edges
    group by edge_date
),

daily_active as (
    select
        activity_date,
        count(*) as dau
    from activity
    group by activity_date
),

running as (
    select
        days.date_day as activity_date,
        coalesce(daily_active.dau, 0) as dau,
        sum(coalesce(daily_edges.weekly_delta, 0)) over (
            order by days.date_day rows between unbounded preceding and current row
        ) as wau,
        sum(coalesce(daily_edges.monthly_delta, 0)) over (
            order by days.date_day rows between unbounded preceding and current row
        ) as mau
    from days
    left join daily_edges on days.date_day = daily_edges.edge_date
    left join daily_active on days.date_day = daily_active.activity_date
),

final as (
    select
        activity_date,
        dau,
        cast(wau as bigint) as wau,
        cast(mau as bigint) as mau,
        cast(dau as double) / nullif(mau, 0) as stickiness
    from running
)

select * from final
