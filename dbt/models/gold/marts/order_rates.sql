/*
    One row for all orders to date: conversion, cancellation and refund rates. Each rate is a
    count of orders over orders created (not a mean of daily rates); 0 when there are no orders.
    Rates are doubles on every target (Snowflake's integer division keeps only a few decimals).
*/
with

totals as (

    select
        count(*) as orders_created,
        count(case when is_converted then 1 end) as orders_converted,
        count(case when is_canceled then 1 end) as orders_canceled,
        count(case when is_refunded then 1 end) as orders_refunded,
        count(case when is_canceled_or_refunded then 1 end) as orders_canceled_or_refunded
    from {{ ref('fct_orders') }}

)

select
    orders_created,
    orders_converted,
    coalesce(cast(orders_converted as double) / nullif(orders_created, 0), 0) as conversion_rate,
    orders_canceled,
    coalesce(cast(orders_canceled as double) / nullif(orders_created, 0), 0) as canceled_rate,
    orders_refunded,
    coalesce(cast(orders_refunded as double) / nullif(orders_created, 0), 0) as refunded_rate,
    orders_canceled_or_refunded,
    coalesce(cast(orders_canceled_or_refunded as double) / nullif(orders_created, 0), 0)
        as canceled_or_refunded_rate
from totals
