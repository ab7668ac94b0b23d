/*
    What happened to every message, as counts: one row per check, topic and detail.
      silver_events         distinct events in Silver (duplicates removed)
      duplicate_deliveries  event rows the loaders recorded as loaded minus distinct events
                            (negative only when a loader run died before recording itself)
      quarantined           contract violations kept out of the answers, by reason
      orphan_events         events of orders never created, by event type
      dead_letter           messages rejected by the loaders' contract check, by reason
      load_mismatch         rows read minus loaded minus dead-lettered, over all load runs
                            (zero when nothing was lost)
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

event_loads as (

    select coalesce(sum(rows_loaded), 0) as rows_loaded
    from loads
    where load_kind = 'events'

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
        row_count
    from silver_events

    union all

    select
        'duplicate_deliveries' as check_name,
        'all' as topic,
        'event rows loaded minus distinct events' as detail,
        event_loads.rows_loaded - silver_totals.row_count as row_count
    from event_loads
    cross join silver_totals

    union all

    select
        'quarantined' as check_name,
        topic,
        quarantine_reason as detail,
        count(*) as row_count
    from {{ ref('quarantined_events') }}
    where quarantine_check = 'contract'
    group by topic, quarantine_reason

    union all

    select
        'orphan_events' as check_name,
        topic,
        event_type as detail,
        count(*) as row_count
    from {{ ref('quarantined_events') }}
    where quarantine_check = 'orphan'
    group by topic, event_type

    union all

    select
        'dead_letter' as check_name,
        coalesce(topic, source_kind) as topic,
        reason_group as detail,
        count(*) as row_count
    from {{ ref('stg_bronze__dead_letter') }}
    group by coalesce(topic, source_kind), reason_group

    union all

    select
        'load_mismatch' as check_name,
        load_kind as topic,
        'rows read minus loaded minus dead-lettered' as detail,
        rows_read - rows_loaded - rows_dead_lettered as row_count
    from loads

)

select
    check_name,
    topic,
    detail,
    cast(row_count as bigint) as row_count
from checks
