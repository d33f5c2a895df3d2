-- One row per staged event, joined to the user's version valid at the event. An event of
-- a user the users table does not know keeps its row with a null user_sk (and no user
-- attributes): facts never lose rows to a dimension.
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
        events.properties,
        cast(users.signup_ts as date) as signup_date
    from events
    left join users
        on
            events.user_id = users.user_id
            and events.event_ts >= users.valid_from
            and events.event_ts < users.valid_to
)

select * from final
