-- One row per staged experiment assignment, with the user's version when assigned (a
-- null user_sk, segment and country when the users table does not know the user).
with assignments as (
    select * from stg_assignments
),

users as (
    select * from dim_users
),

final as (
    select
        assignments.experiment_id,
        assignments.user_id,
        users.user_sk,
        assignments.variant,
        assignments.assigned_ts,
        users.segment,
        users.country
    from assignments
    left join users
        on
            assignments.user_id = users.user_id
            and assignments.assigned_ts >= users.valid_from
            and assignments.assigned_ts < users.valid_to
)

select * from final
