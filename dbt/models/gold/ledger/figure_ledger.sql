/*
    The restatement ledger: every figure the answers publish (per day, per product, per
    lead-time segment) and every later change to one. A build appends a row for each figure it
    publishes for the first time and for each published figure whose value it changes (late
    events, a redrive, a correction); `is_current` marks each figure's latest row, so the
    current rows are the published answers. A restatement (`is_restatement`) carries the old
    value, the delta and the Bronze loads of the events this build staged that belong to the
    figure (`cause_loads`). Nothing changed, nothing written: a rerun adds no row.

    It is history, not a function of Bronze: `full_refresh=false` keeps it through
    `transform --full-refresh` (which gives the same Gold, so no row either).
*/
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    full_refresh=false,
    on_schema_change='fail',
    post_hook="{{ retire_superseded_figures() }}",
) }}

with

published as (

    {{ published_figures() }}

),

previous as (

    select
        figure,
        grain,
        figure_key,
        figure_value
    {% if is_incremental() %}
    from {{ this }}
    where is_current
    {% else %}
    from published
    where 1 = 0
    {% endif %}

),

compared as (

    select
        coalesce(published.figure, previous.figure) as figure,
        coalesce(published.grain, previous.grain) as grain,
        coalesce(published.figure_key, previous.figure_key) as figure_key,
        -- A figure no longer published (a product whose every order was refunded) is 0 now.
        coalesce(
            published.figure_value, case when published.figure is null then 0 end
        ) as figure_value,
        previous.figure_value as previous_value,
        previous.figure is not null as is_restatement
    from published
    full outer join previous
        on published.figure = previous.figure
            and published.figure_key = previous.figure_key

),

changed as (

    select *
    from compared
    where not is_restatement or figure_value is distinct from previous_value

),

restated_keys as (

    select distinct
        grain,
        figure_key
    from changed
    where is_restatement

),

-- The orders behind each restated key, by the rule that files an order under it.
key_orders as (

    {{ orders_behind_figures('restated_keys') }}

),

-- The Bronze loads of the events this build staged for those orders.
causes as (

    {% for topic in ['order', 'payment', 'shipment'] %}
    {% if not loop.first %}union all{% endif %}
    {{ staged_loads('stg_bronze__' ~ topic ~ '_events', topic ~ '_events', 'key_orders') }}
    {% endfor %}

),

cause_lists as (

    select
        grain,
        figure_key,
        {{ sorted_text_list('load_id') }} as cause_loads
    from causes
    group by grain, figure_key

)

select
    changed.figure,
    changed.grain,
    changed.figure_key,
    cast(changed.figure_value as decimal(38, 6)) as figure_value,
    cast(changed.previous_value as decimal(38, 6)) as previous_value,
    cast(changed.figure_value - changed.previous_value as decimal(38, 6)) as delta,
    changed.is_restatement,
    case when changed.is_restatement then cause_lists.cause_loads end as cause_loads,
    {{ silver_load_stamp() }} as recorded_at,
    cast('{{ invocation_id }}' as varchar) as dbt_invocation_id,
    true as is_current
from changed
left join cause_lists
    on changed.grain = cause_lists.grain
        and changed.figure_key = cause_lists.figure_key
