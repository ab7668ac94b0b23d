-- A lead time below zero means a producer clock problem; such an order must carry the flag.
select
    order_id,
    hours_created_to_shipped,
    hours_shipped_to_delivered,
    hours_created_to_delivered,
    has_negative_lead_time
from {{ ref('fct_orders') }}
where
    {{ written_by_this_build() }}
    and (
        hours_created_to_shipped < 0
        or hours_shipped_to_delivered < 0
        or hours_created_to_delivered < 0
    )
    and not has_negative_lead_time
