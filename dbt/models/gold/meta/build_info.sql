/*
    One row: when this Gold was built and how far into Bronze the build read. Built last, after
    every mart (and only when they and their tests passed, in `dbt build`), so that readers of
    Gold can tell how old the answers are and whether Bronze has rows the answers do not
    include yet (`retail-pipeline answers` compares the row counts and warns).
*/
-- depends_on: {{ ref('daily_orders') }}
-- depends_on: {{ ref('daily_revenue') }}
-- depends_on: {{ ref('daily_conversion') }}
-- depends_on: {{ ref('order_rates') }}
-- depends_on: {{ ref('top_products') }}
-- depends_on: {{ ref('orders_by_status') }}
-- depends_on: {{ ref('fulfillment_lead_times') }}
-- depends_on: {{ ref('dim_date') }}
-- depends_on: {{ ref('dim_customers') }}
-- depends_on: {{ ref('dim_payment_methods') }}
-- depends_on: {{ ref('dim_carriers') }}
-- depends_on: {{ ref('data_quality_summary') }}
with

watermarks as (

    select
        bronze_kind,
        bronze_rows,
        max_ingested_at
    from {{ ref('stg_bronze__watermarks') }}

)

select
    current_timestamp as built_at,
    {{ silver_load_stamp() }} as build_started_at,
    '{{ invocation_id }}' as dbt_invocation_id,
    {{ reporting_currency() }} as reporting_currency,
    cast(coalesce(sum(bronze_rows) filter (where bronze_kind = 'events'), 0) as bigint)
        as bronze_event_rows,
    max(max_ingested_at) filter (where bronze_kind = 'events') as events_ingested_through,
    cast(coalesce(sum(bronze_rows) filter (where bronze_kind = 'reference'), 0) as bigint)
        as bronze_reference_rows,
    max(max_ingested_at) filter (where bronze_kind = 'reference') as reference_ingested_through
from watermarks
