-- One row per user per experiment: the outcome window after first exposure (converted =
-- the experiment's primary metric event happened; net revenue as int_order_revenue
-- defines it, i.e. of completed orders, and their number (the denominator of revenue per
-- order); events as engagement intensity), and the same
-- measures over an equally long pre-exposure window as covariates for CUPED.
with exposures as (
    select * from experiment_exposures
),

experiments as (
    select * from stg_experiments
),

events as (
    select * from fct_events
),

orders as (
    select * from int_order_revenue
),

windows as (
    select
        exposures.experiment_id,
        exposures.user_id,
        exposures.variant,
        exposures.has_multiple_variants,
        exposures.first_exposure_ts,
        experiments.primary_metric,
        exposures.first_exposure_ts + to_days(exposures.outcome_window_days) as window_end_ts,
        exposures.first_exposure_ts - to_days(exposures.outcome_window_days) as pre_start_ts
    from exposures
    inner join experiments on exposures.experiment_id = experiments.experiment_id
),

event_stats as (
    select
        windows.experiment_id,
        windows.user_id,
        count(*) filter (where events.event_ts >= windows.first_exposure_ts) as n_events,
        count(*) filter (
            where events.event_ts >= windows.first_exposure_ts
            and events.event_type = windows.primary_metric
        ) as n_metric_events,
        count(*) filter (where events.event_ts < windows.first_exposure_ts) as pre_n_events,
        count(*) filter (
            where events.event_ts < windows.first_exposure_ts
            and events.event_type = windows.primary_metric
        ) as pre_n_metric_events
    from windows
    inner join events
        on
            windows.user_id = events.user_id
            and windows.pre_start_ts <= events.event_ts
            and windows.window_end_ts > events.event_ts
    group by windows.experiment_id, windows.user_id
),

order_stats as (
    select
        windows.experiment_id,
        windows.user_id,
        coalesce(sum(orders.net_revenue) filter (
            where orders.order_ts >= windows.first_exposure_ts
        ), 0) as revenue,
        count(*) filter (where orders.order_ts >= windows.first_exposure_ts) as n_orders,
        coalesce(sum(orders.net_revenue) filter (
            where orders.order_ts < windows.first_exposure_ts
        ), 0) as pre_revenue
    from windows
    inner join orders
        on
            windows.user_id = orders.user_id
            and windows.pre_start_ts <= orders.order_ts
            and windows.window_end_ts > orders.order_ts
            and orders.is_recognized
    group by windows.experiment_id, windows.user_id
),

final as (
    select
        windows.experiment_id,
        windows.user_id,
        windows.variant,
        windows.has_multiple_variants,
        windows.first_exposure_ts,
        windows.window_end_ts,
        coalesce(event_stats.n_metric_events, 0) > 0 as is_converted,
        coalesce(order_stats.revenue, 0) as revenue,
        coalesce(order_stats.n_orders, 0) as n_orders,
        coalesce(event_stats.n_events, 0) as n_events,
        coalesce(event_stats.pre_n_metric_events, 0) > 0 as pre_is_converted,
        coalesce(order_stats.pre_revenue, 0) as pre_revenue,
        coalesce(event_stats.pre_n_events, 0) as pre_n_events
    from windows
    left join event_stats
        on
            windows.experiment_id = event_stats.experiment_id
            and windows.user_id = event_stats.user_id
    left join order_stats
        on
            windows.experiment_id = order_stats.experiment_id
            and windows.user_id = order_stats.user_id
)

select * from final
