-- One row per day of the calendar: kept (not cancelled) orders and their units, gross
-- revenue, the refunded and pending parts of it, and net revenue (completed orders, as
-- defined once in int_order_revenue) with its cost and margin.
with days as (
    select * from dim_date
),

order_revenue as (
    select * from int_order_revenue
),

order_totals as (
    select
        order_date,
        count(*) filter (where is_kept) as n_orders,
        count(*) filter (where status = 'cancelled') as n_cancelled,
        coalesce(sum(n_units) filter (where is_kept), 0) as n_units,
        sum(gross_revenue) as gross_revenue,
        sum(refunded_revenue) as refunded_revenue,
        sum(pending_revenue) as pending_revenue,
        sum(net_revenue) as net_revenue,
        coalesce(sum(net_cost_amount), 0) as cost_amount,
        coalesce(sum(net_margin), 0) as margin
    from order_revenue
    group by order_date
),

final as (
    select
        days.date_day as sales_date,
        coalesce(order_totals.n_orders, 0) as n_orders,
        coalesce(order_totals.n_cancelled, 0) as n_cancelled,
        coalesce(order_totals.n_units, 0) as n_units,
        coalesce(order_totals.gross_revenue, 0) as gross_revenue,
        coalesce(order_totals.refunded_revenue, 0) as refunded_revenue,
        coalesce(order_totals.pending_revenue, 0) as pending_revenue,
        coalesce(order_totals.net_revenue, 0) as net_revenue,
        coalesce(order_totals.cost_amount, 0) as cost_amount,
        coalesce(order_totals.margin, 0) as margin
    from days
    left join order_totals on days.date_day = order_totals.order_date
)

select * from final
