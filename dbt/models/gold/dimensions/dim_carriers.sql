-- One row per carrier seen on a shipment of an order.
select carrier
from {{ ref('int_orders') }}
where carrier is not null
group by carrier
