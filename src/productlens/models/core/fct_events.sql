-- One row per event of a known user, joined to the user's version valid at the event.
with events as (
    select * from stg_events
),

users as (
    select * from dim_users
),

final as (
    select
        events.event_id,
        events.user_id,
        users.user_sk,
        events.session_id,
        events.event_type,
        events.event_ts,
        cast(events.event_ts as date) as event_date,
        events.device,
        events.country,
        events.product_id,
        events.amount,
        cast(users.signup_ts as date) as signup_date
    from events
    inner join users
        on
            events.user_id = users.user_id
            and events.event_ts >= users.valid_from
            and events.event_ts < users.valid_to
)

select * from final
