{{
    config(
        unique_key=['topic', 'event_id'],
        pre_hook="{{ release_resolved_orphans() }}",
    )
}}

/*
    Events kept out of the answers, one row per event (topic, event_id: each service numbers
    its own events, so an order event and a payment may share an event_id): orphans, events of
    an order whose order_created never arrived. (Contract violations never reach Silver: the loaders
    dead-letter them, see stg_bronze__dead_letter.) An orphan leaves this table by itself once
    its order_created is loaded. Incremental runs add the newly staged orphans, after a pre-hook
    has released the orphans whose order has arrived since.
*/

with

staged_events as (

    select
        'orders' as topic,
        event_id,
        event_type,
        order_id,
        event_at,
        _ingested_at,
        _silver_loaded_at
    from {{ ref('stg_bronze__order_events') }}
    {% if is_incremental() %}
    where {{ newly_staged() }}
    {% endif %}
    union all
    select
        'payments' as topic,
        event_id,
        event_type,
        order_id,
        event_at,
        _ingested_at,
        _silver_loaded_at
    from {{ ref('stg_bronze__payment_events') }}
    {% if is_incremental() %}
    where {{ newly_staged() }}
    {% endif %}
    union all
    select
        'shipments' as topic,
        event_id,
        event_type,
        order_id,
        event_at,
        _ingested_at,
        _silver_loaded_at
    from {{ ref('stg_bronze__shipment_events') }}
    {% if is_incremental() %}
    where {{ newly_staged() }}
    {% endif %}

)

select
    staged_events.event_id,
    staged_events.topic,
    staged_events.event_type,
    staged_events.order_id,
    staged_events.event_at,
    'orphan' as quarantine_check,
    'no order_created for this order' as quarantine_reason,
    staged_events._ingested_at,
    staged_events._silver_loaded_at
from staged_events
where
    not exists (
        select 1
        from {{ ref('int_orders') }} as orders
        where orders.order_id = staged_events.order_id
    )
