/*
    What happened to every message, as counts: one row per check, topic and detail.
      silver_events         distinct events in Silver (duplicates removed)
      duplicate_deliveries  event rows the loaders recorded as loaded minus distinct events
                            (negative only when a loader run died before recording itself)
      orphan_events         events of orders never created, by event type
      non_reporting_currency  money the answers leave out because it is not in the reporting
                            currency (never converted), by currency: orders created, orders
                            whose basket would otherwise be product revenue (amount = those
                            baskets), captures and refunds of existing orders (amount = their sum)
      dead_letter           messages rejected by the loaders' contract check, by reason (a
                            message redrive loaded since is not counted: it is an event now)
      load_mismatch         per kind of load: rows read minus loaded minus dead-lettered; rows
                            and dead letters each run recorded against those Bronze holds under
                            its load id (absolute difference per run); a Bronze row of a run
                            with no record counts under kind 'unrecorded' (all zero when
                            nothing was lost or written unaccounted)
*/

with

silver_events as (

    select
        'orders' as topic,
        count(*) as row_count
    from {{ ref('stg_bronze__order_events') }}
    union all
    select
        'payments' as topic,
        count(*) as row_count
    from {{ ref('stg_bronze__payment_events') }}
    union all
    select
        'shipments' as topic,
        count(*) as row_count
    from {{ ref('stg_bronze__shipment_events') }}

),

loads as (

    select
        load_kind,
        sum(rows_read) as rows_read,
        sum(rows_loaded) as rows_loaded,
        sum(rows_dead_lettered) as rows_dead_lettered
    from {{ ref('stg_bronze__loads') }}
    group by load_kind

),

stored_rows as (
    {%- set loaded_tables = [
        'order_events', 'payment_events', 'shipment_events', 'customers', 'products',
    ] %}
    {%- for table in loaded_tables %}

    select
        _load_id as load_id,
        count(*) as rows_loaded,
        0 as rows_dead_lettered
    from {{ source('bronze', table) }}
    group by _load_id

    union all
    {%- endfor %}

    select
        _load_id as load_id,
        0 as rows_loaded,
        count(*) as rows_dead_lettered
    from {{ source('bronze', 'dead_letter') }}
    group by _load_id

),

stored_by_load as (

    select
        load_id,
        sum(rows_loaded) as rows_loaded,
        sum(rows_dead_lettered) as rows_dead_lettered
    from stored_rows
    group by load_id

),

recorded_vs_stored as (

    select
        coalesce(recorded.load_kind, 'unrecorded') as load_kind,
        sum(abs(coalesce(recorded.rows_loaded, 0) - coalesce(stored_by_load.rows_loaded, 0)))
            as loaded_difference,
        sum(abs(
            coalesce(recorded.rows_dead_lettered, 0)
            - coalesce(stored_by_load.rows_dead_lettered, 0)
        )) as dead_letter_difference
    -- Bronze's own record, read by the same statement that counts the rows: one snapshot, so
    -- a batch a loader commits while this build runs (retail-pipeline run) is in both or in
    -- neither. (stg_bronze__loads was built earlier in the build.)
    from (
        select
            load_id,
            kind as load_kind,
            rows_loaded,
            rows_dead_lettered
        from {{ source('bronze', '_loads') }}
    ) as recorded
    full outer join stored_by_load
        on recorded.load_id = stored_by_load.load_id
    group by coalesce(recorded.load_kind, 'unrecorded')

),

event_loads as (

    select coalesce(sum(rows_loaded), 0) as rows_loaded
    from loads
    where load_kind = 'events'

),

other_currency_orders as (

    select
        order_id,
        currency,
        is_converted and not is_canceled and not is_refunded as would_be_revenue
    from {{ ref('int_orders') }}
    where not is_reporting_currency

),

other_currency_baskets as (

    select
        other_currency_orders.currency,
        count(distinct other_currency_orders.order_id) as orders,
        sum(items.line_amount) as basket_amount
    from other_currency_orders
    inner join {{ ref('int_order_items') }} as items
        on other_currency_orders.order_id = items.order_id
    where other_currency_orders.would_be_revenue
    group by other_currency_orders.currency

),

other_currency_payments as (

    select
        payments.currency,
        payments.event_type,
        payments.amount
    from {{ ref('stg_bronze__payment_events') }} as payments
    where
        payments.currency != {{ reporting_currency() }}
        and payments.event_type in ('payment_captured', 'payment_refunded')
        and payments.order_id in (select orders.order_id from {{ ref('int_orders') }} as orders)

),

silver_totals as (

    select sum(row_count) as row_count
    from silver_events

),

checks as (

    select
        'silver_events' as check_name,
        topic,
        'distinct events' as detail,
        row_count,
        null as amount
    from silver_events

    union all

    select
        'duplicate_deliveries' as check_name,
        'all' as topic,
        'event rows loaded minus distinct events' as detail,
        event_loads.rows_loaded - silver_totals.row_count as row_count,
        null as amount
    from event_loads
    cross join silver_totals

    union all

    select
        'orphan_events' as check_name,
        topic,
        event_type as detail,
        count(*) as row_count,
        null as amount
    from {{ ref('quarantined_events') }}
    where quarantine_check = 'orphan'
    group by topic, event_type

    union all

    select
        'non_reporting_currency' as check_name,
        'orders' as topic,
        currency || ': orders created' as detail,
        count(*) as row_count,
        null as amount
    from other_currency_orders
    group by currency

    union all

    select
        'non_reporting_currency' as check_name,
        'orders' as topic,
        currency || ': product revenue not counted' as detail,
        orders as row_count,
        basket_amount as amount
    from other_currency_baskets

    union all

    select
        'non_reporting_currency' as check_name,
        'payments' as topic,
        currency || ': ' || event_type || ' not counted' as detail,
        count(*) as row_count,
        sum(amount) as amount
    from other_currency_payments
    group by currency, event_type

    union all

    select
        'dead_letter' as check_name,
        coalesce(topic, source_kind) as topic,
        reason_group as detail,
        count(*) as row_count,
        null as amount
    from {{ ref('stg_bronze__dead_letter') }}
    where not is_redriven
    group by coalesce(topic, source_kind), reason_group

    union all

    select
        'load_mismatch' as check_name,
        load_kind as topic,
        'rows read minus loaded minus dead-lettered' as detail,
        rows_read - rows_loaded - rows_dead_lettered as row_count,
        null as amount
    from loads

    union all

    select
        'load_mismatch' as check_name,
        load_kind as topic,
        'rows recorded as loaded vs rows in Bronze' as detail,
        loaded_difference as row_count,
        null as amount
    from recorded_vs_stored

    union all

    select
        'load_mismatch' as check_name,
        load_kind as topic,
        'dead letters recorded vs dead letters in Bronze' as detail,
        dead_letter_difference as row_count,
        null as amount
    from recorded_vs_stored

)

select
    check_name,
    topic,
    detail,
    cast(row_count as bigint) as row_count,
    -- In the currency the detail names, rounded to cents once.
    {{ cents('amount') }} as amount
from checks
