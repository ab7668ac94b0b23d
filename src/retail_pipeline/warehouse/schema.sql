-- Bronze layer: raw, append-only. One statement per `;`. {json} is the JSON column type.
create schema if not exists bronze;

create table if not exists bronze._meta (
    key varchar primary key,
    value varchar not null
);

-- The event and reference tables are generated from the contract (warehouse/bronze.py).

-- Every message that broke the contract, with the reason and where it came from.
create table if not exists bronze.dead_letter (
    _source_kind varchar not null,      -- file | kafka | batch (snapshot files) | api | postgres
    _topic varchar,
    _partition integer,
    _offset bigint,
    _key varchar,                       -- Kafka key or record key; text, lossless (staging.escaped_text)
    _kafka_ts timestamptz,
    _source_file varchar,
    _source_line bigint,
    raw_payload varchar,                -- as it came; not UTF-8: escaped_text (lossless)
    reason varchar not null,
    _ingested_at timestamptz not null,
    _load_id varchar not null,
    redriven_at timestamptz,            -- when `retail-pipeline redrive` loaded it (null: still dead)
    redriven_by varchar                 -- the load id of that redrive
);

-- Where each source resumes; written in the same transaction as the rows it covers.
create table if not exists bronze._positions (
    source varchar not null,            -- file:<path>, kafka:<topic>, api:<url>, postgres:<url>
    partition integer not null,         -- Kafka partition, 0 for files, API and Postgres
    next_offset bigint not null,        -- byte offset / Kafka offset / records taken (API, Postgres)
    next_line bigint,                   -- files: line number of the next line
    fingerprint varchar,                -- files: <n>:<sha256 of the first n bytes>; API and
                                        -- Postgres: the window, JSON (docs/batch-sources.md)
    updated_at timestamptz not null,
    load_id varchar not null,
    primary key (source, partition)
);

create table if not exists bronze._loads (
    load_id varchar not null,
    kind varchar not null,              -- events | customers | products
    source varchar not null,
    content_hash varchar,
    started_at timestamptz not null,
    finished_at timestamptz not null,
    rows_read bigint not null,
    rows_loaded bigint not null,
    rows_dead_lettered bigint not null
);
