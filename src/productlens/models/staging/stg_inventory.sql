-- One row per product per snapshot day: units on hand at the end of the day.
with source as (
    select * from raw.inventory
),

final as (
    select
        snapshot_date,
        trim(product_id) as product_id,
        on_hand
    from source
)

select * from final
