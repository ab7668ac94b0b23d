{#
    SCD type 2 history of a reference entity from its staged snapshot loads: a new version
    starts whenever a snapshot carries different attributes than the previous snapshot that
    listed the key. valid_from / valid_to are snapshot load times; the current version has
    valid_to null and is_current true. A key missing from a later snapshot keeps its last
    version (snapshots are read as upserts, like a dbt snapshot without hard-delete handling).
    Incremental runs rebuild the history of the keys whose attributes in a newly staged
    snapshot differ from their current version.
#}
{% macro scd2_history(staging_model, key, version_id, attributes) %}

with

{% if is_incremental() %}
touched_keys as (

    select staged.{{ key }}
    from {{ ref(staging_model) }} as staged
    left join {{ this }} as history
        on staged.{{ key }} = history.{{ key }} and history.is_current
    where
        {{ newly_staged('_silver_loaded_at', 'staged') }}
        and (
            staged.attributes_digest is distinct from history.attributes_digest
            -- a snapshot committed out of load order may move a version's start
            or staged._ingested_at < history.valid_from
        )

),
{% endif %}

snapshot_rows as (

    select *
    from {{ ref(staging_model) }}
    {% if is_incremental() %}
    where {{ key }} in (select touched_keys.{{ key }} from touched_keys)
    {% endif %}

),

changes as (

    select
        *,
        lag(attributes_digest) over (
            partition by {{ key }} order by _ingested_at, _load_id
        ) as previous_attributes_digest,
        -- Stamped with the newest snapshot row, changed or not, for the next run's window.
        max(_silver_loaded_at) over (partition by {{ key }}) as history_loaded_at
    from snapshot_rows

),

versions as (

    select *
    from changes
    where previous_attributes_digest is distinct from attributes_digest

),

validity as (

    select
        *,
        _ingested_at as valid_from,
        lead(_ingested_at) over (
            partition by {{ key }} order by _ingested_at, _load_id
        ) as valid_to
    from versions

)

select
    {{ hash_values([key, timestamp_key('valid_from')]) }} as {{ version_id }},
    {{ key }},
    {%- for attribute in attributes %}
    {{ attribute }},
    {%- endfor %}
    attributes_digest,
    valid_from,
    valid_to,
    valid_to is null as is_current,
    _load_id as first_seen_load_id,
    history_loaded_at as _silver_loaded_at
from validity

{% endmacro %}
