-- One row per user per experiment: variant, first exposure time, and whether the user
-- was recorded in more than one variant (a multiple-exposure flag for the readout).
with assignments as (
    select * from stg_assignments
),

experiments as (
    select * from stg_experiments
),

per_user as (
    select
        experiment_id,
        user_id,
        min(variant) as variant,
        min(assigned_ts) as first_exposure_ts,
        count(distinct variant) > 1 as has_multiple_variants
    from assignments
    group by experiment_id, user_id
),

final as (
    select
        per_user.experiment_id,
        per_user.user_id,
        per_user.variant,
        per_user.first_exposure_ts,
        per_user.has_multiple_variants,
        experiments.outcome_window_days
    from per_user
    inner join experiments on per_user.experiment_id = experiments.experiment_id
)

select * from final
