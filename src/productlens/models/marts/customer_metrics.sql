-- One row per user: orders, AOV, first and last order, days from signup to first purchase,
-- historical CLV (revenue and margin to date), a simple predicted 12-month CLV, RFM
-- scores (1-5, 5 best), a churn-risk band, and the segment now and at the first order.
-- Predicted CLV = AOV x orders per year of tenure x a retention factor exp(-recency/90):
-- a transparent heuristic, not a fitted model.
with users as (
    select * from dim_users
),

orders as (
    select * from fct_orders
),

order_margin as (
    select * from int_order_margins
),

days as (
    select * from dim_date
),

horizon as (
    select max(date_day) as as_of_date from days
),

completed as (
    select
        orders.user_id,
        orders.order_id,
        orders.order_ts,
        orders.order_date,
        orders.total_amount,
        orders.segment,
        coalesce(order_margin.margin, 0) as margin,
        row_number() over (partition by orders.user_id order by orders.order_ts) as order_no
    from orders
    left join order_margin on orders.order_id = order_margin.order_id
    where orders.status = 'completed'
),

per_user as (
    select
        user_id,
        count(*) as n_orders,
        sum(total_amount) as revenue,
        sum(margin) as margin,
        min(order_ts) as first_order_ts,
        max(order_ts) as last_order_ts,
        min(order_date) as first_order_date,
        max(order_date) as last_order_date,
        min(segment) filter (where order_no = 1) as segment_at_first_order
    from completed
    group by user_id
),

current_users as (
    select
        user_id,
        segment,
        cast(signup_ts as date) as signup_date
    from users
    where is_current
),

scored as (
    select
        current_users.user_id,
        current_users.segment,
        current_users.signup_date,
        per_user.segment_at_first_order,
        coalesce(per_user.n_orders, 0) as n_orders,
        coalesce(per_user.revenue, 0) as revenue,
        coalesce(per_user.margin, 0) as margin,
        per_user.first_order_ts,
        per_user.last_order_ts,
        per_user.first_order_date - current_users.signup_date as days_to_first_purchase,
        horizon.as_of_date - per_user.last_order_date as recency_days,
        horizon.as_of_date - current_users.signup_date + 1 as tenure_days
    from current_users
    cross join horizon
    left join per_user on current_users.user_id = per_user.user_id
),

ranked as (
    select
        *,
        case when n_orders > 0 then ntile(5) over (
            partition by n_orders > 0 order by recency_days desc
        ) end as recency_score,
        case when n_orders > 0 then ntile(5) over (
            partition by n_orders > 0 order by n_orders asc
        ) end as frequency_score,
        case when n_orders > 0 then ntile(5) over (
            partition by n_orders > 0 order by revenue asc
        ) end as monetary_score
    from scored
),

final as (
    select
        user_id,
        segment,
        segment_at_first_order,
        signup_date,
        n_orders,
        revenue,
        margin,
        revenue / nullif(n_orders, 0) as aov,
        first_order_ts,
        last_order_ts,
        days_to_first_purchase,
        recency_days,
        revenue as historical_clv,
        coalesce(
            revenue / nullif(n_orders, 0) * n_orders * 365.0 / tenure_days
            * exp(-recency_days / 90.0),
            0
        ) as predicted_clv_12m,
        recency_score,
        frequency_score,
        monetary_score,
        case
            when n_orders = 0 then 'never_bought'
            when recency_days <= 30 then 'active'
            when recency_days <= 90 then 'at_risk'
            else 'churned'
        end as churn_risk
    from ranked
)

select * from final
