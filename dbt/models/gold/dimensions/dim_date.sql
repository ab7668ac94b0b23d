-- One row per calendar day (UTC) from the first to the last day with an order or a payment.
with

activity_days as (

    select order_date as activity_date from {{ ref('fct_orders') }}
    union all
    select movement_date as activity_date from {{ ref('fct_payments') }}

),

bounds as (

    select
        min(activity_date) as first_day,
        max(activity_date) as last_day
    from activity_days

),

days as (

    select cast(unnest(generate_series(first_day, last_day, interval 1 day)) as date) as date_day
    from bounds
    where first_day is not null

)

select
    date_day,
    cast(year(date_day) as integer) as calendar_year,
    cast(quarter(date_day) as integer) as calendar_quarter,
    cast(month(date_day) as integer) as calendar_month,
    monthname(date_day) as month_name,
    cast(isodow(date_day) as integer) as iso_day_of_week,
    dayname(date_day) as day_name,
    cast(weekofyear(date_day) as integer) as iso_week,
    isodow(date_day) >= 6 as is_weekend
from days
