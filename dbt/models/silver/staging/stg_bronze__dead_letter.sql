-- Dead letters: every message that broke the contract, with a normalised reason for counting.
-- A view (dbt_project.yml): `retail-pipeline redrive` changes dead letters in place (marks the
-- redriven, updates a reason), which an append-only model would never see, and a table rebuilt
-- on every run would copy every raw payload each time. No _silver_loaded_at: nothing is staged.
with

bronze_rows as (

    select
        *,
        {{ hash_values([
            '_source_kind', '_topic', '_partition', '_offset', '_source_file', '_source_line',
            '_load_id', 'reason',
        ]) }} as dead_letter_id
    from {{ live_bronze(source('bronze', 'dead_letter')) }}

)

select
    dead_letter_id,
    _source_kind as source_kind,
    _topic as topic,
    _partition as kafka_partition,
    _offset as source_offset,
    _key as message_key,
    _kafka_ts as kafka_at,
    _source_file as source_file,
    _source_line as source_line,
    raw_payload,
    reason,
    -- Reasons embed values ("order_total 12.5 != sum of items 17.5"); standalone numbers are
    -- masked so that they group.
    {{ mask_numbers('reason') }} as reason_group,
    -- A redriven message is loaded now (under the redrive's load id): no longer dead.
    redriven_at is not null as is_redriven,
    redriven_at,
    redriven_by as redriven_by_load_id,
    _ingested_at,
    _load_id
from bronze_rows
