-- One row per experiment.
with source as (
    select * from raw.experiments
),

final as (
    select
        trim(experiment_id) as experiment_id,
        trim(name) as experiment_name,
        hypothesis,
        variants,
        start_ts,
        end_ts,
        lower(trim(exposure_event)) as exposure_event,
        lower(trim(primary_metric)) as primary_metric,
        outcome_window_days
    from source
)

select * from final
