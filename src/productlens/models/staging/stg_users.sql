-- One row per user: keys trimmed, vocabulary normalised. Ingestion guarantees one raw
-- row per key; the unique test beside this model checks it.
with source as (
    select * from raw.users
),

final as (
    select
        trim(user_id) as user_id,
        signup_ts,
        upper(trim(country)) as country,
        lower(trim(device)) as device,
        lower(trim(acquisition_channel)) as acquisition_channel,
        nullif(trim(campaign_id), '') as campaign_id,
        trim(segment) as segment
    from source
)

select * from final
