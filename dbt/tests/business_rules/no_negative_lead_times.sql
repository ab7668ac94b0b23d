{{ config(severity='warn') }}

-- Warns about every flagged order: the lead-time statistics include it, as METRICS.md defines
-- them, but someone should look at the producer's clock.
select
    order_id,
    order_created_at,
    first_dispatched_at,
    first_delivered_at
from {{ ref('fct_orders') }}
where
    {{ written_by_this_build() }}
    and has_negative_lead_time
