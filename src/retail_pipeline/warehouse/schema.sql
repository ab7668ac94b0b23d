-- Bronze layer: raw, append-only. One statement per `;`. {json} is the JSON column type.
create schema if not exists bronze;

create table if not exists bronze._meta (
    key varchar primary key,
    value varchar not null
);

-- Event tables share one shape: the raw payload plus where it came from.
create table if not exists bronze.order_events (
    event_id varchar not null,          -- envelope fields extracted for cheap incremental reads
    event_type varchar not null,
    event_timestamp timestamptz not null,
    payload {json} not null,            -- the original message, byte for byte
    _topic varchar not null,            -- orders | payments | shipments
    _partition integer,                 -- Kafka partition (null for files)
    _offset bigint not null,            -- Kafka offset, or byte offset of the line in the file
    _key varchar,                       -- Kafka message key (order_id)
    _kafka_ts timestamptz,              -- Kafka message timestamp
    _source_file varchar,               -- file the line came from (null for Kafka)
    _source_line bigint,                -- 1-based line number in that file
    _ingested_at timestamptz not null,  -- commit time of the batch
    _load_id varchar not null           -- the ingest run that wrote the row
);
create table if not exists bronze.payment_events as select * from bronze.order_events limit 0;
create table if not exists bronze.shipment_events as select * from bronze.order_events limit 0;

create table if not exists bronze.customers (
    customer_id varchar not null,
    payload {json} not null,
    _source_file varchar not null,
    _record_number bigint not null,     -- 1-based record (array element or NDJSON line)
    _content_hash varchar not null,     -- sha256 of the snapshot file
    _ingested_at timestamptz not null,
    _load_id varchar not null
);

create table if not exists bronze.products (
    product_id varchar not null,
    payload {json} not null,
    _source_file varchar not null,
    _record_number bigint not null,
    _content_hash varchar not null,
    _ingested_at timestamptz not null,
    _load_id varchar not null
);

-- Every message that broke the contract, with the reason and where it came from.
create table if not exists bronze.dead_letter (
    _source_kind varchar not null,      -- file | kafka | batch
    _topic varchar,
    _partition integer,
    _offset bigint,
    _key varchar,
    _kafka_ts timestamptz,
    _source_file varchar,
    _source_line bigint,
    raw_payload varchar,                -- the raw text (non-UTF-8 bytes backslash-escaped)
    reason varchar not null,
    _ingested_at timestamptz not null,
    _load_id varchar not null
);

-- Where each source resumes; written in the same transaction as the rows it covers.
create table if not exists bronze._positions (
    source varchar not null,            -- file:<absolute path> or kafka:<topic>
    partition integer not null,         -- Kafka partition, 0 for files
    next_offset bigint not null,        -- byte offset / Kafka offset of the next message
    next_line bigint,                   -- files: line number of the next line
    fingerprint varchar,                -- files: <n>:<sha256 of the first n bytes>
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
