-- One row per staged order, with the user's version valid at the order (a null user_sk
-- and segment when the users table does not know the user).
with orders as (
    select * from stg_orders
),

users as (
    select * from dim_users
),

final as (
    select
        orders.order_id,
        orders.user_id,
        users.user_sk,
        orders.order_ts,
        cast(orders.order_ts as date) as order_date,
        orders.status,
        orders.total_amount,
        orders.status <> 'cancelled' as is_kept,
        orders.campaign_id,
        users.segment
    from orders
    left join users
        on
            orders.user_id = users.user_id
            and orders.order_ts >= users.valid_from
            and orders.order_ts < users.valid_to
)

select * from final
