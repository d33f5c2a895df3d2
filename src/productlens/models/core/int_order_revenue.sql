-- One row per order: the warehouse's one definition of revenue. Gross revenue is what a
-- kept (not cancelled) order booked; net revenue counts only completed orders: a refund
-- returns the whole order, a pending order counts once it completes, a cancelled order
-- never counts. `total_amount` is what the customer paid (the contract carries no
-- discount, tax, shipping or partial refund). Units, cost and margin come from the
-- order's items (null for an order without items, as in an orders-only project, and
-- a line of a product the catalog does not know adds no cost or margin).
with orders as (
    select * from fct_orders
),

items as (
    select * from fct_order_items
),

order_items as (
    select
        order_id,
        sum(quantity) as n_units,
        sum(revenue) as items_revenue,
        sum(cost_amount) as cost_amount,
        sum(margin) as margin
    from items
    group by order_id
),

flagged as (
    select
        orders.order_id,
        orders.user_id,
        orders.user_sk,
        orders.order_ts,
        orders.order_date,
        orders.status,
        orders.campaign_id,
        orders.segment,
        orders.total_amount,
        orders.is_kept,
        orders.status = 'completed' as is_recognized,
        order_items.n_units,
        order_items.items_revenue,
        order_items.cost_amount,
        order_items.margin
    from orders
    left join order_items on orders.order_id = order_items.order_id
),

final as (
    select
        *,
        case when is_kept then total_amount else 0 end as gross_revenue,
        case when status = 'refunded' then total_amount else 0 end as refunded_revenue,
        case when status = 'pending' then total_amount else 0 end as pending_revenue,
        case when is_recognized then total_amount else 0 end as net_revenue,
        case when is_recognized then cost_amount else 0 end as net_cost_amount,
        case when is_recognized then margin else 0 end as net_margin
    from flagged
)

select * from final
