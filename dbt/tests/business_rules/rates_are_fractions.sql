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
        rate_name as row_key,
        rate
    -- Standard UNPIVOT (DuckDB and Snowflake), not DuckDB's simplified form.
    from {{ ref('order_rates') }}
    unpivot (rate for rate_name in (
        conversion_rate, canceled_rate, refunded_rate, canceled_or_refunded_rate
    )) as unpivoted
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
