/*
    One row per day (UTC) with a capture or a refund in the reporting currency. Cash basis: gross
    is what was captured that day, refunds what was refunded that day, net = gross - refunds.
    Payments in other currencies are not converted and not counted (data_quality_summary lists
    them). Sums are exact; each figure is rounded to cents once, here.
*/
with

movements as (

    select
        movement_date,
        movement_type,
        amount
    from {{ ref('fct_payments') }}
    where is_reporting_currency

),

sums as (

    select
        movement_date,
        coalesce(sum(case when movement_type = 'capture' then amount end), 0) as gross,
        coalesce(sum(case when movement_type = 'refund' then amount end), 0) as refunded,
        count(case when movement_type = 'capture' then 1 end) as captures,
        count(case when movement_type = 'refund' then 1 end) as refund_count
    from movements
    group by movement_date

)

select
    movement_date as revenue_date,
    {{ reporting_currency() }} as currency,
    {{ cents('gross') }} as gross_revenue,
    {{ cents('refunded') }} as refunds,
    {{ cents('gross - refunded') }} as net_revenue,
    captures,
    refund_count
from sums
