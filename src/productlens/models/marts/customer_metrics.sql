-- One row per user: orders, AOV, first and last order, days from signup to first purchase,
-- historical CLV (net revenue and margin to date), a predicted 12-month CLV, RFM
-- scores (1-5, 5 best), a churn-risk band, and the segment now and at the first order.
-- Orders and revenue are those int_order_revenue counts in net revenue (completed).
-- Predicted CLV, P(alive) and expected purchases come from the fitted customer_value mart
-- (BG/NBD + Gamma-Gamma) when its fit_status is fitted: predicted_clv_12m = clv_52w (52
-- weeks, discounted), and churn_risk from the probability alive: active when >= 0.7,
-- at_risk when >= 0.3, else churned (churn_risk_basis = probability_alive). Without a fit
-- (too few customers or repeat buyers, or too short a history to see anyone leave) they
-- fall back to a transparent heuristic (churn_risk_basis = recency): predicted CLV =
-- AOV x orders per year of tenure x a retention factor exp(-recency/90), churn risk
-- active within 30 days of the last order, at_risk within 90, else churned; P(alive) and
-- expected purchases are then null. A user without orders is never_bought (no_orders).
-- RFM scores are cumulative-distribution quintiles among buyers: score = ceil(5 x the
-- share of buyers whose value is no better than the user's). Equal values get equal
-- scores, the best value always scores 5, a better value never scores lower; a value
-- shared by many buyers scores by its top (if 80% bought once, once scores 4).
with users as (
    select * from dim_users
),

order_revenue as (
    select * from int_order_revenue
),

days as (
    select * from dim_date
),

customer_fit as (
    select * from customer_value
),

fitted as (
    select
        user_id,
        probability_alive,
        expected_purchases_52w,
        clv_52w
    from customer_fit
    where fit_status = 'fitted'
),

horizon as (
    select max(date_day) as as_of_date from days
),

completed as (
    select
        user_id,
        order_id,
        order_ts,
        order_date,
        net_revenue,
        segment,
        coalesce(net_margin, 0) as margin,
        row_number() over (partition by user_id order by order_ts, order_id) as order_no
    from order_revenue
    where is_recognized
),

per_user as (
    select
        user_id,
        count(*) as n_orders,
        sum(net_revenue) as revenue,
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
        horizon.as_of_date - current_users.signup_date + 1 as tenure_days,
        fitted.probability_alive,
        fitted.expected_purchases_52w,
        fitted.clv_52w
    from current_users
    cross join horizon
    left join per_user on current_users.user_id = per_user.user_id
    left join fitted on current_users.user_id = fitted.user_id
),

-- Per buyer, how many buyers are no better (peers included: the default RANGE frame
-- counts ties together, which is what makes the scores tie-stable). Revenue is compared
-- in cents so that sums of the same amounts in another order tie.
at_or_below as (
    select
        *,
        count(*) over (partition by n_orders > 0) as n_buyers,
        count(*) over (
            partition by n_orders > 0 order by recency_days desc
            range between unbounded preceding and current row
        ) as n_recency_at_or_below,
        count(*) over (
            partition by n_orders > 0 order by n_orders asc
            range between unbounded preceding and current row
        ) as n_frequency_at_or_below,
        count(*) over (
            partition by n_orders > 0 order by round(revenue, 2) asc
            range between unbounded preceding and current row
        ) as n_monetary_at_or_below
    from scored
),

-- 5 x count is an exact integer and one division in double precision cannot round a
-- non-integer quotient onto an integer (it is at least 1/n_buyers away), so ceil decides
-- the quintile exactly (a decimal division, Spark's for 5.0, rounds at 6 places).
ranked as (
    select
        *,
        case
            when n_orders > 0
                then cast(ceil(cast(5 * n_recency_at_or_below as double) / n_buyers) as integer)
        end as recency_score,
        case
            when n_orders > 0
                then cast(ceil(cast(5 * n_frequency_at_or_below as double) / n_buyers) as integer)
        end as frequency_score,
        case
            when n_orders > 0
                then cast(ceil(cast(5 * n_monetary_at_or_below as double) / n_buyers) as integer)
        end as monetary_score
    from at_or_below
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
        case
            when n_orders > 0 and clv_52w is not null then clv_52w
            else coalesce(
                revenue / nullif(n_orders, 0) * n_orders * 365.0 / tenure_days
                * exp(-recency_days / 90.0),
                0
            )
        end as predicted_clv_12m,
        case when n_orders > 0 then probability_alive end as probability_alive,
        case when n_orders > 0 then expected_purchases_52w end as expected_purchases_12m,
        recency_score,
        frequency_score,
        monetary_score,
        case
            when n_orders = 0 then 'never_bought'
            when probability_alive >= 0.7 then 'active'
            when probability_alive >= 0.3 then 'at_risk'
            when probability_alive is not null then 'churned'
            when recency_days <= 30 then 'active'
            when recency_days <= 90 then 'at_risk'
            else 'churned'
        end as churn_risk,
        case
            when n_orders = 0 then 'no_orders'
            when probability_alive is not null then 'probability_alive'
            else 'recency'
        end as churn_risk_basis
    from ranked
)

select * from final
