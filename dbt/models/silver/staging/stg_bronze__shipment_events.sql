-- Shipment events: Bronze's typed columns, one row per event_id (the first arrival).
with

bronze_rows as (

    {{ unstaged_rows(source('bronze', 'shipment_events'), columns=[
        'event_id', 'event_type', 'event_version', 'event_timestamp', 'produced_at',
        'source_system', 'shipment_id', 'order_id', 'carrier', 'shipment_status',
        '_partition', '_offset', '_source_file', '_source_line', '_ingested_at',
    ]) }}

),

first_arrivals as (

    {{ first_arrival('bronze_rows') }}

)

select
    event_id,
    event_type,
    event_version,
    shipment_id,
    order_id,
    carrier,
    shipment_status,
    event_timestamp as event_at,
    {{ utc_date('event_timestamp') }} as event_date,
    produced_at,
    source_system,
    _partition,
    _offset,
    _ingested_at,
    {{ silver_load_stamp() }} as _silver_loaded_at
from first_arrivals
