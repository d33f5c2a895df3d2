-- One row per product (current catalog attributes) over the data's period: units shipped
-- (kept, i.e. not cancelled, orders), net revenue with its cost and margin (the lines of
-- the orders int_order_revenue counts in net revenue: completed), margin %, average
-- stock, inventory turnover (units shipped / average units on hand) and days of cover at
-- the last snapshot.
with products as (
    select * from dim_products
),

items as (
    select * from fct_order_items
),

order_revenue as (
    select * from int_order_revenue
),

inventory as (
    select * from fct_inventory_daily
),

days as (
    select * from dim_date
),

period as (
    select count(*) as n_days from days
),

sales as (
    select
        items.product_id,
        sum(items.quantity) as n_units,
        coalesce(sum(items.revenue) filter (where order_revenue.is_recognized), 0) as revenue,
        coalesce(
            sum(items.cost_amount) filter (where order_revenue.is_recognized), 0
        ) as cost_amount,
        coalesce(sum(items.margin) filter (where order_revenue.is_recognized), 0) as margin
    from items
    inner join order_revenue on items.order_id = order_revenue.order_id
    where items.is_kept
    group by items.product_id
),

stock as (
    select
        product_id,
        avg(on_hand) as avg_on_hand,
        max(snapshot_date) as last_snapshot_date
    from inventory
    group by product_id
),

last_stock as (
    select
        inventory.product_id,
        inventory.on_hand as last_on_hand
    from inventory
    inner join stock
        on
            inventory.product_id = stock.product_id
            and inventory.snapshot_date = stock.last_snapshot_date
),

final as (
    select
        products.product_id,
        products.product_name,
        products.category,
        products.brand,
        products.price as current_price,
        coalesce(sales.n_units, 0) as n_units,
        coalesce(sales.revenue, 0) as revenue,
        coalesce(sales.cost_amount, 0) as cost_amount,
        coalesce(sales.margin, 0) as margin,
        sales.margin / nullif(sales.revenue, 0) as margin_pct,
        stock.avg_on_hand,
        coalesce(sales.n_units, 0) / nullif(stock.avg_on_hand, 0) as inventory_turnover,
        last_stock.last_on_hand
        / nullif(coalesce(sales.n_units, 0) / period.n_days, 0) as days_of_cover
    from products
    cross join period
    left join sales on products.product_id = sales.product_id
    left join stock on products.product_id = stock.product_id
    left join last_stock on products.product_id = last_stock.product_id
    where products.is_current
)

select * from final
