-- One row per staged subscription period, with its annual recurring revenue and the
-- user's version when it started (a null user_sk when the users table does not know
-- the user).
with subscriptions as (
    select * from stg_subscriptions
),

users as (
    select * from dim_users
),

final as (
    select
        subscriptions.subscription_id,
        subscriptions.user_id,
        users.user_sk,
        subscriptions.plan,
        subscriptions.billing_period,
        subscriptions.amount,
        case
            when subscriptions.billing_period = 'annual' then subscriptions.amount
            else subscriptions.amount * 12
        end as arr,
        subscriptions.started_at,
        subscriptions.cancelled_at,
        subscriptions.ended_at,
        subscriptions.cancelled_at is not null as is_cancelled
    from subscriptions
    left join users
        on
            subscriptions.user_id = users.user_id
            and subscriptions.started_at >= users.valid_from
            and subscriptions.started_at < users.valid_to
)

select * from final
