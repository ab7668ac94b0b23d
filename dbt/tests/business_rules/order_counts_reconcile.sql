{{ config(tags=['whole_table']) }}

-- One order, one count: per-day orders, statuses and the overall rates all count the same orders.
with

totals as (

    select
        'fct_orders' as counted_in,
        count(*) as orders
    from {{ ref('fct_orders') }}
    union all
    select
        'daily_orders' as counted_in,
        sum(orders_created) as orders
    from {{ ref('daily_orders') }}
    union all
    select
        'orders_by_status' as counted_in,
        sum(orders) as orders
    from {{ ref('orders_by_status') }}
    union all
    select
        'order_rates' as counted_in,
        orders_created as orders
    from {{ ref('order_rates') }}

)

select *
from totals
where orders != (select count(*) from {{ ref('fct_orders') }})
