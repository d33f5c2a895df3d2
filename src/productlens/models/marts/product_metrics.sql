-- One row per product (current catalog attributes): units, revenue, cost and margin of
-- kept orders over the data's period, margin %, average stock, inventory turnover
-- (units sold / average units on hand) and days of cover at the last snapshot.
with products as (
    select * from dim_products
),

items as (
    select * from fct_order_items
),

inventory as (
    select * from stg_inventory
),

days as (
    select * from dim_date
),

period as (
    select count(*) as n_days from days
),

sales as (
    select
        product_id,
        sum(quantity) as n_units,
        sum(revenue) as revenue,
        sum(cost_amount) as cost_amount,
        sum(margin) as margin
    from items
    where is_kept
    group by product_id
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
