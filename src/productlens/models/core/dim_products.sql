-- One row per version of a product (SCD Type 2): price and cost over a half-open range
-- [valid_from, valid_to); the first version reaches back to 1900, the current to 9999.
with products as (
    select * from stg_products
),

ordered as (
    select
        product_id,
        product_name,
        category,
        brand,
        price,
        cost,
        updated_at,
        row_number() over (partition by product_id order by updated_at) as version_no,
        lead(updated_at) over (partition by product_id order by updated_at) as next_updated_at
    from products
),

final as (
    select
        md5(concat_ws('|', product_id, cast(version_no as varchar))) as product_sk,
        product_id,
        version_no,
        case
            when version_no = 1 then timestamp '1900-01-01 00:00:00' else updated_at
        end as valid_from,
        coalesce(next_updated_at, timestamp '9999-12-31 00:00:00') as valid_to,
        next_updated_at is null as is_current,
        product_name,
        category,
        brand,
        price,
        cost
    from ordered
)

select * from final
