-- Customer snapshot rows: typed, one row per customer per snapshot load.
with

bronze_rows as (

    {{ unstaged_rows(source('bronze', 'customers'), key='_load_id') }}

),

-- A snapshot that lists a customer twice counts its last record.
last_record_per_load as (

    select *
    from bronze_rows
    qualify
        row_number() over (partition by _load_id, customer_id order by _record_number desc) = 1

),

parsed as (

    select
        *,
        json_transform(
            payload,
            '{"name": "VARCHAR", "email": "VARCHAR", "country": "VARCHAR", "created_at": "VARCHAR"}'
        ) as body
    from last_record_per_load

)

select
    customer_id,
    body.name as customer_name,
    body.email,
    body.country as country_code,
    cast(body.created_at as timestamptz) as signed_up_at,
    md5(
        concat_ws(
            '|', coalesce(body.name, ''), coalesce(body.email, ''), coalesce(body.country, ''),
            coalesce(body.created_at, '')
        )
    ) as attributes_hash,
    _source_file,
    _record_number,
    _content_hash,
    _ingested_at,
    _load_id,
    {{ silver_load_stamp() }} as _silver_loaded_at
from parsed
