-- One row per payment method seen on a payment of an order.
select
    payment_method,
    replace(upper(left(payment_method, 1)) || substr(payment_method, 2), '_', ' ')
        as payment_method_name
from {{ ref('int_orders') }}
where payment_method is not null
group by payment_method
