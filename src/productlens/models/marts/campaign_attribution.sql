-- One row per campaign. First touch: the users it acquired (signups), their kept orders
-- and revenue over the data's period. Last touch: the orders attributed to it at order
-- time. ROAS = first-touch revenue / spend; ROI = (first-touch margin - spend) / spend;
-- cost per signup; CAC = spend / acquired users who bought.
with campaigns as (
    select * from dim_campaigns
),

users as (
    select * from stg_users
),

orders as (
    select * from fct_orders
),

order_margin as (
    select * from int_order_margins
),

first_touch as (
    select
        users.campaign_id,
        count(distinct users.user_id) as n_signups,
        count(distinct orders.user_id) as n_customers,
        count(orders.order_id) as n_orders,
        coalesce(sum(orders.total_amount), 0) as revenue,
        coalesce(sum(order_margin.margin), 0) as margin
    from users
    left join orders on users.user_id = orders.user_id and orders.status = 'completed'
    left join order_margin on orders.order_id = order_margin.order_id
    where users.campaign_id is not null
    group by users.campaign_id
),

last_touch as (
    select
        campaign_id,
        count(*) as n_orders,
        sum(total_amount) as revenue
    from orders
    where campaign_id is not null and status = 'completed'
    group by campaign_id
),

final as (
    select
        campaigns.campaign_id,
        campaigns.campaign_name,
        campaigns.channel,
        campaigns.spend,
        coalesce(first_touch.n_signups, 0) as first_touch_signups,
        coalesce(first_touch.n_customers, 0) as first_touch_customers,
        coalesce(first_touch.n_orders, 0) as first_touch_orders,
        coalesce(first_touch.revenue, 0) as first_touch_revenue,
        coalesce(last_touch.n_orders, 0) as last_touch_orders,
        coalesce(last_touch.revenue, 0) as last_touch_revenue,
        first_touch.revenue / nullif(campaigns.spend, 0) as roas,
        (coalesce(first_touch.margin, 0) - campaigns.spend) / nullif(campaigns.spend, 0) as roi,
        campaigns.spend / nullif(first_touch.n_signups, 0) as cost_per_signup,
        campaigns.spend / nullif(first_touch.n_customers, 0) as cac
    from campaigns
    left join first_touch on campaigns.campaign_id = first_touch.campaign_id
    left join last_touch on campaigns.campaign_id = last_touch.campaign_id
)

select * from final
