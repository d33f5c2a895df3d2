-- One row per user per experiment: the variant and when the user was first exposed.
with source as (
    select * from raw.assignments
),

final as (
    select
        trim(experiment_id) as experiment_id,
        trim(user_id) as user_id,
        trim(variant) as variant,
        assigned_ts
    from source
)

select * from final
