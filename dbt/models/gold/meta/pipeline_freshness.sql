/*
    How fresh Bronze is now, for readers of Gold alone: one row per Bronze event and reference
    table with its row count and newest `_ingested_at` at the moment it is read. A view (set in
    dbt_project.yml), so it follows the loaders between builds; compared with gold.build_info
    it says whether Bronze holds rows the answers do not include yet. It is the one Gold model
    that reads Bronze directly: staging tables only move when dbt runs, and this must not. On
    Snowflake a view runs with its owner's privileges, so the reporting role reads it without
    any grant on Bronze (no PII passes: counts and times only). On DuckDB, Bronze is named
    without its database (macros/bronze_watermarks.sql says why).
*/
{{ bronze_watermarks('last_ingested_at', live=true) }}
