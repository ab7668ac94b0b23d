/*
    One row for all orders to date: conversion, cancellation and refund rates. Each rate is a
    count of orders over orders created (not a mean of daily rates); 0 when there are no orders.
*/
with

totals as (

    select
        count(*) as orders_created,
        count(*) filter (where is_converted) as orders_converted,
        count(*) filter (where is_canceled) as orders_canceled,
        count(*) filter (where is_refunded) as orders_refunded,
        count(*) filter (where is_canceled_or_refunded) as orders_canceled_or_refunded
    from {{ ref('fct_orders') }}

)

select
    orders_created,
    orders_converted,
    coalesce(orders_converted / nullif(orders_created, 0), 0) as conversion_rate,
    orders_canceled,
    coalesce(orders_canceled / nullif(orders_created, 0), 0) as canceled_rate,
    orders_refunded,
    coalesce(orders_refunded / nullif(orders_created, 0), 0) as refunded_rate,
    orders_canceled_or_refunded,
    coalesce(orders_canceled_or_refunded / nullif(orders_created, 0), 0)
        as canceled_or_refunded_rate
from totals
