{{ config(unique_key='order_id') }}

-- One row per money movement: every payment_captured and payment_refunded event of an order.
with

orders as (

    select
        order_id,
        _silver_loaded_at
    from {{ ref('int_orders') }}
    {% if is_incremental() %}
    where {{ newly_staged() }}
    {% endif %}

)

select
    payments.event_id as payment_event_id,
    payments.payment_id,
    payments.order_id,
    case payments.event_type
        when 'payment_captured' then 'capture'
        when 'payment_refunded' then 'refund'
    end as movement_type,
    payments.event_at as moved_at,
    payments.event_date as movement_date,
    payments.payment_method,
    payments.currency,
    -- Only these count as revenue; other currencies are never converted.
    payments.currency = {{ reporting_currency() }} as is_reporting_currency,
    cast(payments.amount as decimal(18, 2)) as amount,
    orders._silver_loaded_at
from {{ ref('stg_bronze__payment_events') }} as payments
inner join orders on payments.order_id = orders.order_id
where payments.event_type in ('payment_captured', 'payment_refunded')
