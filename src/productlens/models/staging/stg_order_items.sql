-- One row per order line.
with source as (
    select * from raw.order_items
),

final as (
    select
        trim(order_id) as order_id,
        line_no,
        trim(product_id) as product_id,
        quantity,
        unit_price
    from source
)

select * from final
