-- One row per week per lifecycle status (weeks start on the configured day): new users
-- (active in their signup week), returning (active this week and last), resurrecting
-- (active this week, not last, but before), and dormant (active last week, not this).
-- A user the users table does not know counts as signed up in the week it was first seen.
with users as (
    select * from stg_users
),

events as (
    select * from fct_events
),

days as (
    select * from dim_date
),

weeks as (
    select distinct week_start_date from days
),

known_signups as (
    select
        users.user_id,
        days.week_start_date as signup_week
    from users
    inner join days on cast(users.signup_ts as date) = days.date_day
),

active_weeks as (
    select distinct
        events.user_id,
        days.week_start_date as active_week
    from events
    inner join days on events.event_date = days.date_day
),

signups as (
    select
        user_id,
        signup_week
    from known_signups
    union all
    select
        active_weeks.user_id,
        min(active_weeks.active_week) as signup_week
    from active_weeks
    left join users on active_weeks.user_id = users.user_id
    where users.user_id is null
    group by active_weeks.user_id
),

sequenced as (
    select
        active_weeks.user_id,
        active_weeks.active_week,
        signups.signup_week,
        lag(active_weeks.active_week) over (
            partition by active_weeks.user_id order by active_weeks.active_week
        ) as previous_active_week,
        lead(active_weeks.active_week) over (
            partition by active_weeks.user_id order by active_weeks.active_week
        ) as next_active_week
    from active_weeks
    inner join signups on active_weeks.user_id = signups.user_id
),

statuses as (
    select
        active_week as week_start_date,
        case
            when active_week = signup_week then 'new'
            when previous_active_week = active_week - 7 then 'returning'
            else 'resurrecting'
        end as status
    from sequenced
    union all
    select
        active_week + 7 as week_start_date,
        'dormant' as status
    from sequenced
    where next_active_week is null or next_active_week > active_week + 7
),

final as (
    select
        statuses.week_start_date,
        statuses.status,
        count(*) as n_users
    from statuses
    inner join weeks on statuses.week_start_date = weeks.week_start_date
    group by statuses.week_start_date, statuses.status
)

select * from final
