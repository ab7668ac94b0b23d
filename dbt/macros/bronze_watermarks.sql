{#
    One row per Bronze event and reference table: its kind, name, row count and newest
    `_ingested_at`. Staging records it per build (stg_bronze__watermarks) and Gold exposes it live
    (pipeline_freshness, a view: `live` names Bronze as live_bronze in dialect.sql does).
#}
{% macro bronze_watermarks(ingested_at_column, live=false) %}
{%- set tables = [
    ('events', 'order_events'),
    ('events', 'payment_events'),
    ('events', 'shipment_events'),
    ('reference', 'customers'),
    ('reference', 'products'),
] %}
{%- for kind, table in tables %}
    {%- set relation = live_bronze(source('bronze', table)) if live else source('bronze', table) %}
select
    cast('{{ kind }}' as varchar) as bronze_kind,
    cast('{{ table }}' as varchar) as bronze_table,
    cast(count(*) as bigint) as bronze_rows,
    max(_ingested_at) as {{ ingested_at_column }}
from {{ relation }}
{% if not loop.last %}union all{% endif %}
{%- endfor %}
{% endmacro %}
