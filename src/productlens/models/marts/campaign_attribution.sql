-- One row per campaign. First touch: the users it acquired (signups), their completed
-- orders and net revenue (int_order_revenue's definition) over the data's period. Last
-- touch: the completed orders attributed to it at order time. ROAS = first-touch revenue
-- / spend; ROI = (first-touch margin - spend) / spend; cost per signup; CAC = spend /
-- acquired users who bought.
with campaigns as (
    select * from dim_campaigns
),

users as (
    select * from dim_users
),

order_revenue as (
    select * from int_order_revenue
),

orders as (
    select
        order_id,
        user_id,
        campaign_id,
        net_revenue,
        net_margin
    from order_revenue
    where is_recognized
),

first_touch as (
    select
        users.campaign_id,
        count(distinct users.user_id) as n_signups,
        count(distinct orders.user_id) as n_customers,
        count(orders.order_id) as n_orders,
        coalesce(sum(orders.net_revenue), 0) as revenue,
        coalesce(sum(orders.net_margin), 0) as margin
    from users
    left join orders on users.user_id = orders.user_id
    where users.is_current and users.campaign_id is not null
    group by users.campaign_id
),

last_touch as (
    select
        campaign_id,
        count(*) as n_orders,
        sum(net_revenue) as revenue
    from orders
    where campaign_id is not null
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
