-- Product snapshot rows: typed, one row per product per snapshot load.
with

bronze_rows as (

    {{ unstaged_rows(source('bronze', 'products'), key='_load_id') }}

),

-- A snapshot that lists a product twice counts its last record.
last_record_per_load as (

    select *
    from bronze_rows
    qualify
        row_number() over (partition by _load_id, product_id order by _record_number desc) = 1

),

parsed as (

    select
        *,
        json_transform(
            payload,
            '{
                "product_name": "VARCHAR",
                "category": "VARCHAR",
                "price": "DECIMAL(18, 2)",
                "active": "BOOLEAN"
            }'
        ) as body
    from last_record_per_load

)

select
    product_id,
    body.product_name,
    body.category,
    body.price,
    body.active as is_active,
    md5(
        concat_ws(
            '|', coalesce(body.product_name, ''), coalesce(body.category, ''),
            coalesce(cast(body.price as varchar), ''), coalesce(cast(body.active as varchar), '')
        )
    ) as attributes_hash,
    _source_file,
    _record_number,
    _content_hash,
    _ingested_at,
    _load_id,
    {{ silver_load_stamp() }} as _silver_loaded_at
from parsed
