-- Revenue is cash basis: every day's net is its gross minus its refunds, to the cent.
select
    revenue_date,
    currency,
    gross_revenue,
    refunds,
    net_revenue
from {{ ref('daily_revenue') }}
where net_revenue != gross_revenue - refunds
