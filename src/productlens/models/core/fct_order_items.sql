-- One row per staged order line, priced and costed with the product version valid at the
-- order: revenue, cost and margin in the order's currency. A line of a product (or an
-- order) the warehouse does not know keeps its row with a null product_sk and cost.
with items as (
    select * from stg_order_items
),

orders as (
    select * from fct_orders
),

products as (
    select * from dim_products
),

-- Materialised so the planner joins versions on product id first, then filters by time;
-- flattened, it picked a range join of every order with every version (100x slower).
lines as materialized (
    select
        items.order_id,
        items.line_no,
        items.product_id,
        items.quantity,
        items.unit_price,
        orders.user_id,
        orders.order_ts,
        orders.order_date,
        orders.status,
        orders.is_kept
    from items
    left join orders on items.order_id = orders.order_id
),

final as (
    select
        lines.order_id,
        lines.line_no,
        lines.user_id,
        lines.order_ts,
        lines.order_date,
        lines.status,
        lines.is_kept,
        lines.product_id,
        products.product_sk,
        products.category,
        products.brand,
        lines.quantity,
        lines.unit_price,
        products.cost as unit_cost,
        lines.quantity * lines.unit_price as revenue,
        lines.quantity * products.cost as cost_amount,
        lines.quantity * (lines.unit_price - products.cost) as margin
    from lines
    left join products
        on
            lines.product_id = products.product_id
            and lines.order_ts >= products.valid_from
            and lines.order_ts < products.valid_to
)

select * from final
