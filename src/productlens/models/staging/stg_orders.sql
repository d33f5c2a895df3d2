-- One row per order.
with source as (
    select * from raw.orders
),

final as (
    select
        trim(order_id) as order_id,
        trim(user_id) as user_id,
        order_ts,
        lower(trim(status)) as status,
        total_amount,
        nullif(trim(campaign_id), '') as campaign_id
    from source
)

select * from final
