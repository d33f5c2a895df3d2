-- One row per change to a user: the user's segment and country from that moment on.
with source as (
    select * from raw.user_changes
),

final as (
    select
        trim(user_id) as user_id,
        changed_at,
        trim(segment) as segment,
        upper(trim(country)) as country
    from source
)

select * from final
