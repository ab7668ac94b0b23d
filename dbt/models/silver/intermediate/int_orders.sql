{{ config(unique_key='order_id') }}

/*
    Current state of every order: one row per order that has an order_created event, with the
    first time each milestone was reached and the status per METRICS.md. Incremental runs
    recompute every order touched by an event staged since the last run, from all of that
    order's events, so late and out-of-order events land where they belong.
*/

with

order_events as (

    select event_row.*
    from {{ ref('stg_bronze__order_events') }} as event_row
    {% if is_incremental() %}
    {{ join_touched_orders('event_row') }}
    {% endif %}

),

payment_events as (

    select event_row.*
    from {{ ref('stg_bronze__payment_events') }} as event_row
    {% if is_incremental() %}
    {{ join_touched_orders('event_row') }}
    {% endif %}

),

shipment_events as (

    select event_row.*
    from {{ ref('stg_bronze__shipment_events') }} as event_row
    {% if is_incremental() %}
    {{ join_touched_orders('event_row') }}
    {% endif %}

),

order_milestones as (

    select
        order_id,
        min(case when event_type = 'order_created' then event_at end) as created_at,
        min_by(customer_id, case when event_type = 'order_created' then event_at end)
            as customer_id,
        min_by(currency, case when event_type = 'order_created' then event_at end) as currency,
        -- What the order_created said (version 2), or 'unknown' and 0 (version 1).
        min_by(event_version, case when event_type = 'order_created' then event_at end)
            as created_event_version,
        min_by(channel, case when event_type = 'order_created' then event_at end) as channel,
        min_by(discount, case when event_type = 'order_created' then event_at end) as discount,
        min(case when event_type = 'order_canceled' then event_at end) as first_canceled_at,
        count(case when event_type = 'order_updated' then 1 end) as order_updates,
        max(_silver_loaded_at) as _silver_loaded_at
    from order_events
    group by order_id

),

payment_milestones as (

    select
        order_id,
        min(case when event_type = 'payment_authorized' then event_at end) as first_authorized_at,
        min(case when event_type = 'payment_captured' then event_at end) as first_captured_at,
        min(case when event_type = 'payment_refunded' then event_at end) as first_refunded_at,
        count(case when event_type = 'payment_failed' then 1 end) as failed_payments,
        -- Money in the reporting currency only: a payment in another currency is not converted.
        coalesce(
            sum(
                case
                    when
                        event_type = 'payment_captured'
                        and currency = {{ reporting_currency() }}
                        then amount
                end
            ),
            0
        ) as captured_amount,
        coalesce(
            sum(
                case
                    when
                        event_type = 'payment_refunded'
                        and currency = {{ reporting_currency() }}
                        then amount
                end
            ),
            0
        ) as refunded_amount,
        count(
            case
                when
                    event_type in ('payment_captured', 'payment_refunded')
                    and currency != {{ reporting_currency() }}
                    then 1
            end
        ) as other_currency_payments,
        -- The method that paid, else the one last tried.
        coalesce(
            min_by(
                payment_method, case when event_type = 'payment_captured' then event_at end
            ),
            max_by(payment_method, event_at)
        ) as payment_method,
        max(_silver_loaded_at) as _silver_loaded_at
    from payment_events
    group by order_id

),

shipment_milestones as (

    select
        order_id,
        min(case when event_type = 'shipment_dispatched' then event_at end)
            as first_dispatched_at,
        min(case when event_type = 'shipment_delivered' then event_at end) as first_delivered_at,
        count(case when event_type = 'shipment_failed' then 1 end) as failed_deliveries,
        min_by(carrier, event_at) as carrier,
        max(_silver_loaded_at) as _silver_loaded_at
    from shipment_events
    group by order_id

),

joined as (

    select
        order_milestones.order_id,
        order_milestones.customer_id,
        order_milestones.currency,
        order_milestones.created_event_version,
        order_milestones.channel,
        order_milestones.discount,
        order_milestones.created_at,
        {{ utc_date('order_milestones.created_at') }} as order_date,
        order_milestones.order_updates,
        order_milestones.first_canceled_at,
        payment_milestones.first_authorized_at,
        payment_milestones.first_captured_at,
        payment_milestones.first_refunded_at,
        shipment_milestones.first_dispatched_at,
        shipment_milestones.first_delivered_at,
        payment_milestones.payment_method,
        shipment_milestones.carrier,
        coalesce(payment_milestones.failed_payments, 0) as failed_payments,
        coalesce(shipment_milestones.failed_deliveries, 0) as failed_deliveries,
        coalesce(payment_milestones.captured_amount, 0) as captured_amount,
        coalesce(payment_milestones.refunded_amount, 0) as refunded_amount,
        coalesce(payment_milestones.other_currency_payments, 0) as other_currency_payments,
        -- An order without payments or shipments has no stamp of theirs: coalesced, since
        -- greatest() is null if any argument is (Snowflake), where DuckDB skips nulls.
        greatest(
            order_milestones._silver_loaded_at,
            coalesce(payment_milestones._silver_loaded_at, order_milestones._silver_loaded_at),
            coalesce(shipment_milestones._silver_loaded_at, order_milestones._silver_loaded_at)
        ) as _silver_loaded_at
    from order_milestones
    left join payment_milestones on order_milestones.order_id = payment_milestones.order_id
    left join shipment_milestones on order_milestones.order_id = shipment_milestones.order_id
    -- An order exists once its order_created arrived; events before that wait here.
    where order_milestones.created_at is not null

)

select
    order_id,
    customer_id,
    currency,
    currency = {{ reporting_currency() }} as is_reporting_currency,
    created_event_version,
    channel,
    discount,
    created_at,
    order_date,
    -- Furthest milestone reached; a cancellation, then a refund, overrides all of them
    -- (the statuses and their precedence: macros/order_statuses.sql).
    {{ order_status_case() }} as order_status,
    first_captured_at is not null as is_converted,
    first_canceled_at is not null as is_canceled,
    first_refunded_at is not null as is_refunded,
    -- The orders whose latest basket counts as product revenue (METRICS.md); an order in
    -- another currency adds nothing (its prices are never converted).
    first_captured_at is not null
    and first_canceled_at is null
    and first_refunded_at is null
    and currency = {{ reporting_currency() }} as is_revenue_eligible,
    first_authorized_at,
    first_captured_at,
    first_canceled_at,
    first_refunded_at,
    first_dispatched_at,
    first_delivered_at,
    payment_method,
    carrier,
    order_updates,
    failed_payments,
    failed_deliveries,
    captured_amount,
    refunded_amount,
    other_currency_payments,
    _silver_loaded_at
from joined
