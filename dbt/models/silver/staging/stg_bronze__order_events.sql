-- Order events: Bronze's typed columns, one row per event_id (the first arrival). Both contract
-- versions map onto the same columns: order_created version 2 says its channel and discount;
-- every other event (version 1) has the channel 'unknown' and no discount (0).
with

bronze_rows as (

    {{ unstaged_rows(source('bronze', 'order_events'), columns=[
        'event_id', 'event_type', 'event_version', 'event_timestamp', 'produced_at',
        'source_system', 'order_id', 'customer_id', 'order_total', 'currency', 'order_status',
        'items', 'channel', 'discount', '_partition', '_offset', '_source_file', '_source_line', '_ingested_at',
    ]) }}

),

first_arrivals as (

    {{ first_arrival('bronze_rows') }}

)

select
    event_id,
    event_type,
    event_version,
    order_id,
    customer_id,
    order_total,
    currency,
    order_status,
    items,
    items is not null as has_items,
    coalesce(channel, 'unknown') as channel,
    cast(coalesce(discount, 0) as decimal(18, 2)) as discount,
    event_timestamp as event_at,
    {{ utc_date('event_timestamp') }} as event_date,
    produced_at,
    source_system,
    _partition,
    _offset,
    _ingested_at,
    {{ silver_load_stamp() }} as _silver_loaded_at
from first_arrivals
