-- One row per calendar month: gross ARR at the month's end and its movement from the
-- month before, per user: new (first paid month), expansion, contraction, cancelled
-- (churned to zero) and reactivation; net new ARR is their sum.
with subscription_months as (
    select * from fct_subscription_months
),

days as (
    select * from dim_date
),

months as (
    select distinct month_start_date from days
),

users as (
    select distinct user_id from subscription_months
),

user_months as (
    select
        users.user_id,
        months.month_start_date,
        coalesce(sum(subscription_months.arr), 0) as arr
    from users
    cross join months
    left join subscription_months
        on
            users.user_id = subscription_months.user_id
            and months.month_start_date = subscription_months.month_start_date
    group by users.user_id, months.month_start_date
),

changes as (
    select
        user_id,
        month_start_date,
        arr,
        coalesce(lag(arr) over (
            partition by user_id order by month_start_date
        ), 0) as previous_arr,
        coalesce(max(arr) over (
            partition by user_id order by month_start_date
            rows between unbounded preceding and 1 preceding
        ), 0) > 0 as was_paying_before
    from user_months
),

final as (
    select
        month_start_date,
        sum(arr) as gross_arr,
        sum(case when previous_arr = 0 and arr > 0 and not was_paying_before then arr else 0 end)
            as new_arr,
        sum(case when previous_arr = 0 and arr > 0 and was_paying_before then arr else 0 end)
            as reactivation_arr,
        sum(case when previous_arr > 0 and arr > previous_arr then arr - previous_arr else 0 end)
            as expansion_arr,
        sum(
            case
                when previous_arr > 0 and arr > 0 and arr < previous_arr then arr - previous_arr
                else 0
            end
        ) as contraction_arr,
        sum(case when previous_arr > 0 and arr = 0 then -previous_arr else 0 end)
            as cancelled_arr,
        sum(arr - previous_arr) as net_new_arr,
        count(*) filter (where arr > 0) as n_paying_users
    from changes
    group by month_start_date
)

select * from final
