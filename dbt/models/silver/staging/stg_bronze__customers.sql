-- Customer snapshot rows: Bronze's typed columns, one row per customer per snapshot load.
with

bronze_rows as (

    {{ unstaged_load_rows(source('bronze', 'customers'), key='customer_id', columns=[
        'customer_id', 'name', 'email', 'country', 'created_at', '_source_file',
        '_record_number', '_content_hash', '_ingested_at', '_load_id',
    ]) }}

),

-- A snapshot that lists a customer twice counts its last record.
last_record_per_load as (

    select *
    from bronze_rows
    qualify
        row_number() over (partition by _load_id, customer_id order by _record_number desc) = 1

)

select
    customer_id,
    name as customer_name,
    email,
    country as country_code,
    created_at as signed_up_at,
    {{ hash_values([
        'name', 'email', 'country', epoch_microseconds('created_at'),
    ]) }} as attributes_digest,
    _source_file,
    _record_number,
    _content_hash,
    _ingested_at,
    _load_id,
    {{ silver_load_stamp() }} as _silver_loaded_at
from last_record_per_load
