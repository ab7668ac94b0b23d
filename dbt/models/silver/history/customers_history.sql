{{ config(unique_key='customer_id') }}

/*
    SCD type 2 history of customers, from the snapshot loads: a new version starts whenever a
    snapshot carries different attributes than the previous snapshot that listed the customer.
    valid_from / valid_to are snapshot load times; the current version has valid_to null and
    is_current true. A customer missing from a later snapshot keeps its last version (snapshots
    are read as upserts, like a dbt snapshot without hard-delete handling).
    Incremental runs rebuild the history of the customers whose attributes in a newly staged
    snapshot differ from their current version.
*/

with

{% if is_incremental() %}
touched_customers as (

    select staged.customer_id
    from {{ ref('stg_bronze__customers') }} as staged
    left join {{ this }} as history
        on staged.customer_id = history.customer_id and history.is_current
    where
        {{ newly_staged('_silver_loaded_at', 'staged') }}
        and (
            staged.attributes_hash is distinct from history.attributes_hash
            -- a snapshot committed out of load order may move a version's start
            or staged._ingested_at < history.valid_from
        )

),
{% endif %}

snapshot_rows as (

    select *
    from {{ ref('stg_bronze__customers') }}
    {% if is_incremental() %}
    where customer_id in (select touched_customers.customer_id from touched_customers)
    {% endif %}

),

changes as (

    select
        *,
        lag(attributes_hash) over (
            partition by customer_id order by _ingested_at, _load_id
        ) as previous_attributes_hash,
        -- Stamped with the newest snapshot row, changed or not, for the next run's window.
        max(_silver_loaded_at) over (partition by customer_id) as history_loaded_at
    from snapshot_rows

),

versions as (

    select *
    from changes
    where previous_attributes_hash is distinct from attributes_hash

),

validity as (

    select
        *,
        _ingested_at as valid_from,
        lead(_ingested_at) over (
            partition by customer_id order by _ingested_at, _load_id
        ) as valid_to
    from versions

)

select
    md5(customer_id || '|' || cast(valid_from as varchar)) as customer_version_id,
    customer_id,
    customer_name,
    email,
    country_code,
    signed_up_at,
    attributes_hash,
    valid_from,
    valid_to,
    valid_to is null as is_current,
    _load_id as first_seen_load_id,
    history_loaded_at as _silver_loaded_at
from validity
