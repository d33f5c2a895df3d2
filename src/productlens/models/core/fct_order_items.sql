-- One row per order line, priced and costed with the product version valid at the order:
-- revenue, cost and margin in the order's currency.
with items as (
    select * from stg_order_items
),

orders as (
    select * from fct_orders
),

products as (
    select * from dim_products
),

final as (
    select
        items.order_id,
        items.line_no,
        orders.user_id,
        orders.order_ts,
        orders.order_date,
        orders.status,
        orders.is_kept,
        items.product_id,
        products.product_sk,
        products.category,
        products.brand,
        items.quantity,
        items.unit_price,
        products.cost as unit_cost,
        items.quantity * items.unit_price as revenue,
        items.quantity * products.cost as cost_amount,
        items.quantity * (items.unit_price - products.cost) as margin
    from items
    inner join orders on items.order_id = orders.order_id
    inner join products
        on
            items.product_id = products.product_id
            and orders.order_ts >= products.valid_from
            and orders.order_ts < products.valid_to
)

select * from final
