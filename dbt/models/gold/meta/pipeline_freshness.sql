/*
    How fresh Bronze is now, for readers of Gold alone: one row per Bronze event and reference
    table with its row count and newest `_ingested_at` at the moment it is read. A view (set in
    dbt_project.yml), so it follows the loaders between builds; compared with gold.build_info
    it says whether Bronze holds rows the answers do not include yet. It is the one Gold model
    that reads Bronze directly: staging tables only move when dbt runs, and this must not. On
    Snowflake a view runs with its owner's privileges, so the reporting role reads it without
    any grant on Bronze (no PII passes: counts and times only). Bronze is named without its
    database: a DuckDB view keeps the names it was written with, and a warehouse file that is
    copied or renamed has another database name (both warehouses resolve the rest from the
    view's own database).
*/
{%- set tables = [
    ('events', 'order_events'),
    ('events', 'payment_events'),
    ('events', 'shipment_events'),
    ('reference', 'customers'),
    ('reference', 'products'),
] %}

{% for kind, table in tables %}
select
    cast('{{ kind }}' as varchar) as bronze_kind,
    cast('{{ table }}' as varchar) as bronze_table,
    cast(count(*) as bigint) as bronze_rows,
    max(_ingested_at) as last_ingested_at
from {{ source('bronze', table).include(database=false) }}
{% if not loop.last %}union all{% endif %}
{% endfor %}
