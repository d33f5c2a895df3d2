-- One row per staged product snapshot day: units on hand, their value at the cost valid
-- that day, and the units shipped that day (a null product_sk and value for a product
-- the warehouse does not know).
with inventory as (
    select * from stg_inventory
),

products as (
    select * from dim_products
),

items as (
    select * from fct_order_items
),

shipped as (
    select
        product_id,
        order_date,
        sum(quantity) as n_units_shipped
    from items
    where is_kept
    group by product_id, order_date
),

final as (
    select
        inventory.snapshot_date,
        inventory.product_id,
        products.product_sk,
        inventory.on_hand,
        inventory.on_hand * products.cost as stock_value_at_cost,
        coalesce(shipped.n_units_shipped, 0) as n_units_shipped
    from inventory
    left join products
        on
            inventory.product_id = products.product_id
            and cast(inventory.snapshot_date as timestamp) + interval 1 day > products.valid_from
            and cast(inventory.snapshot_date as timestamp) + interval 1 day <= products.valid_to
    left join shipped
        on
            inventory.product_id = shipped.product_id
            and inventory.snapshot_date = shipped.order_date
)

select * from final
