/*
    One row per day (UTC) and currency with a capture or a refund. Cash basis: gross is what was
    captured that day, refunds what was refunded that day, net = gross - refunds.
*/
select
    movement_date as revenue_date,
    currency,
    cast(coalesce(sum(amount) filter (where movement_type = 'capture'), 0) as decimal(18, 2))
        as gross_revenue,
    cast(coalesce(sum(amount) filter (where movement_type = 'refund'), 0) as decimal(18, 2))
        as refunds,
    cast(
        coalesce(sum(amount) filter (where movement_type = 'capture'), 0)
        - coalesce(sum(amount) filter (where movement_type = 'refund'), 0)
        as decimal(18, 2)
    ) as net_revenue,
    count(*) filter (where movement_type = 'capture') as captures,
    count(*) filter (where movement_type = 'refund') as refund_count
from {{ ref('fct_payments') }}
group by movement_date, currency
