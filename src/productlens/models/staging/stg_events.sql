-- One row per event: keys trimmed, vocabulary normalised; if an event was loaded more
-- than once, the earliest load wins.
with source as (
    select * from raw.events
),

normalised as (
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
        properties,
        row_number() over (
            partition by trim(event_id)
            order by _ingested_at, _source_file, _row_number
        ) as load_order
    from source
    where event_id is not null
),

final as (
    select
        event_id,
        user_id,
        session_id,
        event_type,
        event_ts,
        device,
        country,
        product_id,
        amount,
        properties
    from normalised
    where load_order = 1
)

select * from final
