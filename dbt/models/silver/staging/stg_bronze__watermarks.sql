/*
    How far this build read Bronze: one row per Bronze event and reference table, with its row
    count and newest `_ingested_at` at build time (duplicate deliveries included, which staging
    drops). gold.build_info records them, so readers can tell when Bronze has grown since Gold was
    built. Rebuilt on every run; counting and taking a max reads one narrow column.
*/
{{ bronze_watermarks('max_ingested_at') }}
