-- One row per day per event type: events and distinct users (projects created, exports,
-- purchases, ... whatever the product's vocabulary is).
with events as (
    select * from fct_events
),

final as (
    select
        event_date,
        event_type,
        count(*) as n_events,
        count(distinct user_id) as n_users
    from events
    group by event_date, event_type
)

select * from final
