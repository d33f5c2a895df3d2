-- One row per event: keys trimmed, vocabulary normalised.
with source as (
    select * from raw.events
),

final as (
    select
        trim(event_id) as event_id,
        trim(user_id) as user_id,
        nullif(trim(session_id), '') as session_id,
        lower(trim(event_type)) as event_type,
        event_ts,
        lower(trim(device)) as device,
        upper(trim(country)) as country,
        nullif(trim(product_id), '') as product_id,
        amount,
        properties
    from source
)

select * from final
