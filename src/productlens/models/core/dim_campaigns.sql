-- One row per campaign, with its flight length.
with campaigns as (
    select * from stg_campaigns
),

final as (
    select
        campaign_id,
        campaign_name,
        channel,
        start_date,
        end_date,
        spend,
        end_date - start_date + 1 as n_days
    from campaigns
)

select * from final
