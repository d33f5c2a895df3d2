-- One row per marketing campaign.
with source as (
    select * from raw.campaigns
),

final as (
    select
        trim(campaign_id) as campaign_id,
        trim(name) as campaign_name,
        lower(trim(channel)) as channel,
        start_date,
        end_date,
        spend
    from source
)

select * from final
