/*
    One row for all orders to date: conversion, cancellation and refund rates. The counts are
    the sums of daily_orders' daily counts (every order has exactly one order date); each rate
    is a count of orders over orders created (not a mean of daily rates), 0 when there are no
    orders. Rates are doubles on every target (Snowflake's integer division keeps only a few
    decimals).
*/
with

totals as (

    select
        cast(coalesce(sum(orders_created), 0) as bigint) as orders_created,
        cast(coalesce(sum(orders_converted), 0) as bigint) as orders_converted,
        cast(coalesce(sum(orders_canceled), 0) as bigint) as orders_canceled,
        cast(coalesce(sum(orders_refunded), 0) as bigint) as orders_refunded,
        cast(coalesce(sum(orders_canceled_or_refunded), 0) as bigint)
            as orders_canceled_or_refunded
    from {{ ref('daily_orders') }}

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
