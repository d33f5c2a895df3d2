-- One row per order with items: its revenue, cost and margin at the product costs valid
-- when it was placed (shared by the customer and campaign marts).
with items as (
    select * from fct_order_items
),

final as (
    select
        order_id,
        sum(revenue) as revenue,
        sum(cost_amount) as cost_amount,
        sum(margin) as margin
    from items
    group by order_id
)

select * from final
