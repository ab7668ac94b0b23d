-- Every rate and share in Gold is a fraction in [0, 1].
with

rates as (

    select
        'daily_conversion' as gold_model,
        cast(order_date as varchar) as row_key,
        conversion_rate as rate
    from {{ ref('daily_conversion') }}
    union all
    select
        'order_rates' as gold_model,
        unpivoted.rate_name as row_key,
        unpivoted.rate
    from (
        unpivot {{ ref('order_rates') }}
        on conversion_rate, canceled_rate, refunded_rate, canceled_or_refunded_rate
        into name rate_name value rate
    ) as unpivoted
    union all
    select
        'orders_by_status' as gold_model,
        order_status as row_key,
        share_of_orders as rate
    from {{ ref('orders_by_status') }}

)

select *
from rates
where rate is null or rate < 0 or rate > 1
