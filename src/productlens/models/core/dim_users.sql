-- One row per version of a user (SCD Type 2): the user's country and segment over a
-- half-open range [valid_from, valid_to). The first version reaches back to 1900 and the
-- current one forward to 9999, so any moment finds exactly one version.
with users as (
    select * from stg_users
),

changes as (
    select * from stg_user_changes
),

versions as (
    select
        user_id,
        signup_ts as changed_at,
        0 as source_rank,
        country,
        segment
    from users
    union all
    select
        user_id,
        changed_at,
        1 as source_rank,
        country,
        segment
    from changes
),

ordered as (
    select
        user_id,
        changed_at,
        country,
        segment,
        row_number() over (
            partition by user_id order by changed_at, source_rank
        ) as version_no,
        lead(changed_at) over (
            partition by user_id order by changed_at, source_rank
        ) as next_changed_at
    from versions
),

final as (
    select
        md5(concat_ws('|', ordered.user_id, cast(ordered.version_no as varchar))) as user_sk,
        ordered.user_id,
        ordered.version_no,
        case
            when ordered.version_no = 1 then timestamp '1900-01-01 00:00:00'
            else ordered.changed_at
        end as valid_from,
        coalesce(ordered.next_changed_at, timestamp '9999-12-31 00:00:00') as valid_to,
        ordered.next_changed_at is null as is_current,
        ordered.country,
        ordered.segment,
        users.signup_ts,
        users.device,
        users.acquisition_channel,
        users.campaign_id
    from ordered
    inner join users on ordered.user_id = users.user_id
)

select * from final
