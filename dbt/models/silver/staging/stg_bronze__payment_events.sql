-- Payment events: typed, JSON payload parsed, one row per event_id (the first arrival).
with

bronze_rows as (

    {{ unstaged_rows(source('bronze', 'payment_events')) }}

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
                "payment_id": "VARCHAR",
                "order_id": "VARCHAR",
                "amount": "DECIMAL(18, 2)",
                "currency": "VARCHAR",
                "payment_method": "VARCHAR",
                "payment_status": "VARCHAR",
                "failure_reason": "VARCHAR"
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
        body.payment_id,
        body.order_id,
        body.amount,
        body.currency,
        body.payment_method,
        body.payment_status,
        body.failure_reason,
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
        when amount < 0 then 'negative amount'
    end as quarantine_reason,
    {{ silver_load_stamp() }} as _silver_loaded_at
from renamed
