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

    {{ calendar_days('bounds', 'first_day', 'last_day') }}

)

select
    date_day,
    cast(year(date_day) as integer) as calendar_year,
    cast(quarter(date_day) as integer) as calendar_quarter,
    cast(month(date_day) as integer) as calendar_month,
    -- English names spelled out: Snowflake's monthname() and dayname() abbreviate (Jan, Thu).
    case month(date_day)
        {%- for name in [
            'January', 'February', 'March', 'April', 'May', 'June', 'July', 'August',
            'September', 'October', 'November', 'December',
        ] %}
        when {{ loop.index }} then '{{ name }}'
        {%- endfor %}
    end as month_name,
    cast({{ iso_day_of_week('date_day') }} as integer) as iso_day_of_week,
    case {{ iso_day_of_week('date_day') }}
        {%- for name in [
            'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday',
        ] %}
        when {{ loop.index }} then '{{ name }}'
        {%- endfor %}
    end as day_name,
    cast({{ iso_week('date_day') }} as integer) as iso_week,
    {{ iso_day_of_week('date_day') }} >= 6 as is_weekend
from days
