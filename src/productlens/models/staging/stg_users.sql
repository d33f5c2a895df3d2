-- One row per user: keys trimmed, vocabulary normalised; if a user was loaded more than
-- once, the earliest load wins.
with source as (
    select * from raw.users
),

normalised as (
    select
        trim(user_id) as user_id,
        signup_ts,
        upper(trim(country)) as country,
        lower(trim(device)) as device,
        lower(trim(acquisition_channel)) as acquisition_channel,
        nullif(trim(campaign_id), '') as campaign_id,
        trim(segment) as segment,
        row_number() over (
            partition by trim(user_id)
            order by _ingested_at, _source_file, _row_number
        ) as load_order
    from source
    where user_id is not null
),

final as (
    select
        user_id,
        signup_ts,
        country,
        device,
        acquisition_channel,
        campaign_id,
        segment
    from normalised
    where load_order = 1
)

select * from final
