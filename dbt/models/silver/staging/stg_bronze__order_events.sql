-- Order events: typed, JSON payload parsed, one row per event_id (the first arrival).
with

bronze_rows as (

    {{ unstaged_rows(source('bronze', 'order_events')) }}

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
                "order_id": "VARCHAR",
                "customer_id": "VARCHAR",
                "order_total": "DECIMAL(18, 2)",
                "currency": "VARCHAR",
                "order_status": "VARCHAR",
                "items": [
                    {"product_id": "VARCHAR", "quantity": "INTEGER", "unit_price": "DECIMAL(18, 2)"}
                ]
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
        body.order_id,
        body.customer_id,
        body.order_total,
        body.currency,
        body.order_status,
        body.items,
        body.items is not null as has_items,
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
    case
        when currency not in {{ accepted_currencies() }}
            then 'currency ' || currency || ' is not accepted'
        when order_total < 0 then 'negative order_total'
        when list_min(list_transform(items, lambda item: least(item.quantity, item.unit_price))) < 0
            then 'negative item quantity or unit_price'
    end as quarantine_reason,
    {{ silver_load_stamp() }} as _silver_loaded_at
from renamed
