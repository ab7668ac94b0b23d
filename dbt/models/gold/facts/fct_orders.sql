{{ config(unique_key='order_id') }}

-- One row per order (an order exists once its order_created arrived).
with

orders as (

    select * from {{ ref('int_orders') }}
    {% if is_incremental() %}
    where {{ newly_staged() }}
    {% endif %}

),

baskets as (

    -- Joined with int_orders itself, not with `orders` (a CTE read three times, which DuckDB
    -- materializes): a join on a table pushes its keys into the scan of int_order_items.
    select
        items.order_id,
        count(*) as basket_lines,
        sum(items.quantity) as basket_units,
        sum(items.line_amount) as basket_total
    from {{ ref('int_order_items') }} as items
    inner join {{ ref('int_orders') }} as touched on items.order_id = touched.order_id
    {% if is_incremental() %}
    where {{ newly_staged('_silver_loaded_at', 'touched') }}
    {% endif %}
    group by items.order_id

),

lead_times as (

    select
        order_id,
        (
            {{ epoch_microseconds('first_dispatched_at') }} - {{ epoch_microseconds('created_at') }}
        ) / 3600e6 as hours_created_to_shipped,
        (
            {{ epoch_microseconds('first_delivered_at') }}
            - {{ epoch_microseconds('first_dispatched_at') }}
        ) / 3600e6 as hours_shipped_to_delivered,
        (
            {{ epoch_microseconds('first_delivered_at') }} - {{ epoch_microseconds('created_at') }}
        ) / 3600e6 as hours_created_to_delivered
    from orders

)

select
    orders.order_id,
    orders.customer_id,
    orders.order_date,
    orders.created_at as order_created_at,
    orders.order_status,
    orders.payment_method,
    orders.carrier,
    orders.currency,
    cast(coalesce(baskets.basket_lines, 0) as integer) as basket_lines,
    cast(coalesce(baskets.basket_units, 0) as bigint) as basket_units,
    orders.is_reporting_currency,
    -- Exact (4 decimals), in the order's currency.
    cast(coalesce(baskets.basket_total, 0) as decimal(38, 4)) as basket_total,
    -- Payments in the reporting currency only.
    cast(orders.captured_amount as decimal(38, 2)) as captured_amount,
    cast(orders.refunded_amount as decimal(38, 2)) as refunded_amount,
    orders.is_converted,
    orders.is_canceled,
    orders.is_refunded,
    orders.is_canceled or orders.is_refunded as is_canceled_or_refunded,
    orders.is_revenue_eligible,
    orders.first_captured_at,
    orders.first_dispatched_at,
    orders.first_delivered_at,
    orders.first_canceled_at,
    orders.first_refunded_at,
    lead_times.hours_created_to_shipped,
    lead_times.hours_shipped_to_delivered,
    lead_times.hours_created_to_delivered,
    -- A milestone stamped before the one it follows: a producer clock problem, kept and flagged.
    -- (Any of them below zero, nulls skipped: not least(), which is null if any argument is on
    -- Snowflake.)
    coalesce(
        lead_times.hours_created_to_shipped < 0
        or lead_times.hours_shipped_to_delivered < 0
        or lead_times.hours_created_to_delivered < 0,
        false
    ) as has_negative_lead_time,
    orders._silver_loaded_at
from orders
left join baskets on orders.order_id = baskets.order_id
left join lead_times on orders.order_id = lead_times.order_id
