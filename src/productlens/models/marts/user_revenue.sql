-- One row per user with a kept order: orders, revenue net of refunds, rank, and the
-- user's share (and cumulative share, by rank) of all revenue.
with orders as (
    select * from fct_orders
),

per_user as (
    select
        user_id,
        count(*) filter (where is_kept) as n_orders,
        sum(case when status = 'completed' then total_amount else 0 end) as net_revenue
    from orders
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
