-- One row per subscription per calendar month in which it is active at the month's end
-- (or at the end of the data, for the last month): its annual recurring revenue then.
with subscriptions as (
    select * from fct_subscriptions
),

days as (
    select * from dim_date
),

months as (
    select
        month_start_date,
        max(date_day) as month_end_date
    from days
    group by month_start_date
),

measured as (
    select
        months.month_start_date,
        cast(months.month_end_date as timestamp) + interval 1 day as measured_at
    from months
),

final as (
    select
        subscriptions.subscription_id,
        subscriptions.user_id,
        measured.month_start_date,
        subscriptions.plan,
        subscriptions.billing_period,
        subscriptions.arr
    from subscriptions
    inner join measured
        on
            subscriptions.started_at < measured.measured_at
            and (
                subscriptions.ended_at is null
                or subscriptions.ended_at >= measured.measured_at
            )
)

select * from final
