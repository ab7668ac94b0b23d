-- Shipment events: typed, JSON payload parsed, one row per event_id (the first arrival).
with

bronze_rows as (

    {{ unstaged_rows(source('bronze', 'shipment_events')) }}

),

-- Parsed before deduplication: the payload is read once, and only the parsed fields travel on.
parsed as (

    select
        event_id,
        event_type,
        event_timestamp,
        _partition,
        _offset,
        _source_file,
        _source_line,
        _ingested_at,
        json_transform(
            payload,
            '{
                "event_version": "INTEGER",
                "produced_at": "TIMESTAMPTZ",
                "source_system": "VARCHAR",
                "shipment_id": "VARCHAR",
                "order_id": "VARCHAR",
                "carrier": "VARCHAR",
                "shipment_status": "VARCHAR"
            }'
        ) as body
    from bronze_rows

),

first_arrivals as (

    {{ first_arrival('parsed') }}

),

renamed as (

    select
        event_id,
        event_type,
        body.event_version,
        body.shipment_id,
        body.order_id,
        body.carrier,
        body.shipment_status,
        event_timestamp as event_at,
        {{ utc_date('event_timestamp') }} as event_date,
        body.produced_at,
        body.source_system,
        _partition,
        _offset,
        _ingested_at
    from first_arrivals

)

select
    *,
    -- Shipments carry no money; the contract already covers every other field.
    cast(null as varchar) as quarantine_reason,
    {{ silver_load_stamp() }} as _silver_loaded_at
from renamed
