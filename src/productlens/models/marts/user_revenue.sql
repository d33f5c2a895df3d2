-- One row per user with a kept order: kept orders, net revenue (int_order_revenue's
-- definition: completed orders), rank, and the user's share (and cumulative share, by
-- rank) of all net revenue.
with order_revenue as (
    select * from int_order_revenue
),

per_user as (
    select
        user_id,
        count(*) as n_orders,
        sum(net_revenue) as net_revenue
    from order_revenue
    where is_kept
    group by user_id
),

ranked as (
    select
        user_id,
        n_orders,
        net_revenue,
        row_number() over (order by net_revenue desc, user_id asc) as revenue_rank,
        sum(net_revenue) over () as total_revenue
    from per_user
),

final as (
    select
        user_id,
        n_orders,
        net_revenue,
        revenue_rank,
        net_revenue / nullif(total_revenue, 0) as revenue_share,
        sum(net_revenue) over (
            order by revenue_rank rows between unbounded preceding and current row
        ) / nullif(total_revenue, 0) as cumulative_revenue_share
    from ranked
)

select * from final
