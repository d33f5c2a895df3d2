-- One row per product version: the price and cost from `updated_at` on.
with source as (
    select * from raw.products
),

final as (
    select
        trim(product_id) as product_id,
        trim(name) as product_name,
        trim(category) as category,
        trim(brand) as brand,
        price,
        cost,
        updated_at
    from source
)

select * from final
