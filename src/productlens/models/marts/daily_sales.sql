-- One row per day of the calendar: orders, units, revenue, cost and margin of the orders
-- that were kept (not cancelled), and the refunded revenue separately.
with days as (
    select * from dim_date
),

orders as (
    select * from fct_orders
),

items as (
    select * from fct_order_items
),

order_totals as (
    select
        order_date,
        count(*) filter (where is_kept) as n_orders,
        count(*) filter (where status = 'cancelled') as n_cancelled,
        coalesce(sum(total_amount) filter (where is_kept), 0) as gross_revenue,
        coalesce(sum(total_amount) filter (where status = 'refunded'), 0) as refunded_revenue
    from orders
    group by order_date
),

item_totals as (
    select
        order_date,
        sum(quantity) as n_units,
        sum(cost_amount) as cost_amount,
        sum(margin) as margin
    from items
    where is_kept
    group by order_date
),

final as (
    select
        days.date_day as sales_date,
        coalesce(order_totals.n_orders, 0) as n_orders,
        coalesce(order_totals.n_cancelled, 0) as n_cancelled,
        coalesce(item_totals.n_units, 0) as n_units,
        coalesce(order_totals.gross_revenue, 0) as gross_revenue,
        coalesce(order_totals.refunded_revenue, 0) as refunded_revenue,
        coalesce(order_totals.gross_revenue, 0)
        - coalesce(order_totals.refunded_revenue, 0) as net_revenue,
        coalesce(item_totals.cost_amount, 0) as cost_amount,
        coalesce(item_totals.margin, 0) as margin
    from days
    left join order_totals on days.date_day = order_totals.order_date
    left join item_totals on days.date_day = item_totals.order_date
)

select * from final
