-- Product snapshot rows: Bronze's typed columns, one row per product per snapshot load.
with

bronze_rows as (

    {{ unstaged_load_rows(source('bronze', 'products'), key='product_id', columns=[
        'product_id', 'product_name', 'category', 'price', 'active', '_source_file',
        '_record_number', '_content_hash', '_ingested_at', '_load_id',
    ]) }}

),

-- A snapshot that lists a product twice counts its last record.
last_record_per_load as (

    select *
    from bronze_rows
    qualify
        row_number() over (partition by _load_id, product_id order by _record_number desc) = 1

)

select
    product_id,
    product_name,
    category,
    price,
    active as is_active,
    {{ hash_values(['product_name', 'category', 'price', 'active']) }} as attributes_digest,
    _source_file,
    _record_number,
    _content_hash,
    _ingested_at,
    _load_id,
    {{ silver_load_stamp() }} as _silver_loaded_at
from last_record_per_load
