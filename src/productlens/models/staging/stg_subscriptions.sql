-- One row per subscription period (a plan change starts a new row).
with source as (
    select * from raw.subscriptions
),

final as (
    select
        trim(subscription_id) as subscription_id,
        trim(user_id) as user_id,
        trim(plan) as plan,
        lower(trim(billing_period)) as billing_period,
        amount,
        started_at,
        cancelled_at,
        ended_at
    from source
)

select * from final
