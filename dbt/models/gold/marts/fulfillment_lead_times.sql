/*
    One row per fulfillment segment: created -> shipped (first dispatch), shipped -> delivered
    (first delivery after first dispatch) and created -> delivered, in hours. Only orders that
    reached the later milestone count; p50 and p90 interpolate (percentile_cont). Statistics of
    an empty segment are null.
*/
with

segments as (

    select
        1 as segment_order,
        'created_to_shipped' as segment,
        hours_created_to_shipped as hours
    from {{ ref('fct_orders') }}
    union all
    select
        2 as segment_order,
        'shipped_to_delivered' as segment,
        hours_shipped_to_delivered as hours
    from {{ ref('fct_orders') }}
    union all
    select
        3 as segment_order,
        'created_to_delivered' as segment,
        hours_created_to_delivered as hours
    from {{ ref('fct_orders') }}

),

all_segments as (

    select
        segment_list.segment_order,
        segment_list.segment
    from (
        values
        (1, 'created_to_shipped'),
        (2, 'shipped_to_delivered'),
        (3, 'created_to_delivered')
    ) as segment_list (segment_order, segment)

),

stats as (

    select
        segment,
        count(hours) as orders,
        -- Averaged as whole microseconds: an exact integer sum, so the mean does not depend on
        -- the order in which parallel threads add the values up.
        avg(cast(round(hours * 3600e6) as bigint)) / 3600e6 as mean_hours,
        percentile_cont(0.5) within group (order by hours) as p50_hours,
        percentile_cont(0.9) within group (order by hours) as p90_hours,
        min(hours) as min_hours,
        max(hours) as max_hours
    from segments
    where hours is not null
    group by segment

)

select
    all_segments.segment,
    cast(all_segments.segment_order as integer) as segment_order,
    coalesce(stats.orders, 0) as orders,
    stats.mean_hours,
    stats.p50_hours,
    stats.p90_hours,
    stats.min_hours,
    stats.max_hours
from all_segments
left join stats on all_segments.segment = stats.segment
