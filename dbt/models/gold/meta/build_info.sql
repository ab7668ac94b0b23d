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
    -- current_timestamp is a TIMESTAMP_LTZ on Snowflake; the contract says with time zone.
    cast(current_timestamp as timestamptz) as built_at,
    {{ silver_load_stamp() }} as build_started_at,
    '{{ invocation_id }}' as dbt_invocation_id,
    {{ reporting_currency() }} as reporting_currency,
    cast(coalesce(sum(case when bronze_kind = 'events' then bronze_rows end), 0) as bigint)
        as bronze_event_rows,
    max(case when bronze_kind = 'events' then max_ingested_at end) as events_ingested_through,
    cast(coalesce(sum(case when bronze_kind = 'reference' then bronze_rows end), 0) as bigint)
        as bronze_reference_rows,
    max(case when bronze_kind = 'reference' then max_ingested_at end)
        as reference_ingested_through,
    -- What this build was given and read, as `retail-pipeline transform` digests it (project,
    -- settings, Bronze counts): a later transform that finds the same skips dbt ("nothing new").
    cast({{ build_input_signature() }} as varchar) as input_signature
from watermarks
