/*
    One row per product with product revenue, ranked: revenue is quantity x unit_price over the
    latest basket of orders that were captured and neither canceled nor refunded. Ties rank by
    product_id. Name and category are the product's current reference data.
*/
with

product_revenue as (

    select
        product_id,
        currency,
        sum(quantity) as units_sold,
        sum(line_amount) as revenue
    from {{ ref('fct_order_items') }}
    where is_revenue_eligible
    group by product_id, currency

)

select
    cast(row_number() over (
        partition by product_revenue.currency
        order by product_revenue.revenue desc, product_revenue.product_id asc
    ) as integer) as revenue_rank,
    product_revenue.product_id,
    products.product_name,
    products.category,
    product_revenue.currency,
    cast(product_revenue.units_sold as bigint) as units_sold,
    cast(product_revenue.revenue as decimal(18, 2)) as revenue
from product_revenue
left join {{ ref('dim_products') }} as products
    on product_revenue.product_id = products.product_id
