{{
    config(
        unique_key='event_id',
        pre_hook="{{ release_resolved_orphans() }}",
    )
}}

/*
    Events kept out of the answers, one row per event: contract violations the loaders let
    through (a currency outside `accepted_currencies`, negative money) and orphans, events of an
    order whose order_created never arrived (or was itself quarantined). An orphan leaves this
    table by itself once its order_created is loaded. Incremental runs add the newly staged
    events that are quarantined now, after a pre-hook has released the orphans whose order has
    arrived since.
*/

with

staged_events as (

    select
        'orders' as topic,
        event_id,
        event_type,
        order_id,
        event_at,
        quarantine_reason,
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
        quarantine_reason,
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
        quarantine_reason,
        _ingested_at,
        _silver_loaded_at
    from {{ ref('stg_bronze__shipment_events') }}
    {% if is_incremental() %}
    where {{ newly_staged() }}
    {% endif %}

),

contract_violations as (

    select
        *,
        'contract' as quarantine_check
    from staged_events
    where quarantine_reason is not null

),

orphans as (

    select
        staged_events.topic,
        staged_events.event_id,
        staged_events.event_type,
        staged_events.order_id,
        staged_events.event_at,
        'no valid order_created for this order' as quarantine_reason,
        staged_events._ingested_at,
        staged_events._silver_loaded_at,
        'orphan' as quarantine_check
    from staged_events
    where
        staged_events.quarantine_reason is null
        and not exists (
            select 1
            from {{ ref('int_orders') }} as orders
            where orders.order_id = staged_events.order_id
        )

)

select
    event_id,
    topic,
    event_type,
    order_id,
    event_at,
    quarantine_check,
    quarantine_reason,
    _ingested_at,
    _silver_loaded_at
from contract_violations
union all
select
    event_id,
    topic,
    event_type,
    order_id,
    event_at,
    quarantine_check,
    quarantine_reason,
    _ingested_at,
    _silver_loaded_at
from orphans
