/*
    How far this build read Bronze: one row per Bronze event and reference table, with its row
    count and newest `_ingested_at` at build time (duplicate deliveries included, which staging
    drops). gold.build_info records them, so readers can tell when Bronze has grown since Gold was
    built. Rebuilt on every run; counting and taking a max reads one narrow column.
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
    '{{ kind }}' as bronze_kind,
    '{{ table }}' as bronze_table,
    count(*) as bronze_rows,
    max(_ingested_at) as max_ingested_at
from {{ source('bronze', table) }}
{% if not loop.last %}union all{% endif %}
{% endfor %}
