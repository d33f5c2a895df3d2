-- One row per cohort grain (week, month) per signup cohort per period since signup: the
-- cohort's size, how many of its users were active in that period, and the rate. Weeks
-- start on the configured week start (dim_date). A user the users table does not know (an
-- events-only project, or events loaded with an unknown-user warning) belongs to the
-- cohort of the day it was first seen.
with users as (
    select * from stg_users
),

events as (
    select * from fct_events
),

days as (
    select * from dim_date
),

known_signups as (
    select
        users.user_id,
        days.week_start_date as signup_week,
        days.month_start_date as signup_month
    from users
    inner join days on cast(users.signup_ts as date) = days.date_day
),

activity as (
    select distinct
        events.user_id,
        days.week_start_date as active_week,
        days.month_start_date as active_month
    from events
    inner join days on events.event_date = days.date_day
),

first_seen as (
    select
        user_id,
        min(active_week) as signup_week,
        min(active_month) as signup_month
    from activity
    group by user_id
),

signups as (
    select
        user_id,
        signup_week,
        signup_month
    from known_signups
    union all
    select
        first_seen.user_id,
        first_seen.signup_week,
        first_seen.signup_month
    from first_seen
    left join users on first_seen.user_id = users.user_id
    where users.user_id is null
),

weekly as (
    select
        'week' as cohort_grain,
        signups.signup_week as cohort_start_date,
        cast((activity.active_week - signups.signup_week) / 7 as integer) as period_number,
        count(distinct activity.user_id) as n_active_users
    from signups
    inner join activity on signups.user_id = activity.user_id
    where activity.active_week >= signups.signup_week
    group by signups.signup_week, activity.active_week
),

monthly as (
    select
        'month' as cohort_grain,
        signups.signup_month as cohort_start_date,
        cast(
            (extract(year from activity.active_month) - extract(year from signups.signup_month))
            * 12
            + extract(month from activity.active_month)
            - extract(month from signups.signup_month)
            as integer
        ) as period_number,
        count(distinct activity.user_id) as n_active_users
    from signups
    inner join activity on signups.user_id = activity.user_id
    where activity.active_month >= signups.signup_month
    group by signups.signup_month, activity.active_month
),

sizes as (
    select
        'week' as cohort_grain,
        signup_week as cohort_start_date,
        count(*) as cohort_size
    from signups
    group by signup_week
    union all
    select
        'month' as cohort_grain,
        signup_month as cohort_start_date,
        count(*) as cohort_size
    from signups
    group by signup_month
),

periods as (
    select * from weekly
    union all
    select * from monthly
),

final as (
    select
        periods.cohort_grain,
        periods.cohort_start_date,
        periods.period_number,
        sizes.cohort_size,
        periods.n_active_users,
        cast(periods.n_active_users as double) / sizes.cohort_size as retention_rate
    from periods
    inner join sizes
        on
            periods.cohort_grain = sizes.cohort_grain
            and periods.cohort_start_date = sizes.cohort_start_date
)

select * from final
