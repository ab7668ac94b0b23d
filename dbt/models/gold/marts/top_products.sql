/*
    One row per product with product revenue, ranked: revenue is quantity x unit_price over the
    latest basket of orders that were captured and neither canceled nor refunded, in the
    reporting currency (an order in another currency adds nothing). The sum is exact; ranks use
    the exact sum (ties by product_id) and the reported revenue is it rounded to cents once.
    Name and category are the product's current reference data.
*/
with

product_revenue as (

    select
        product_id,
        sum(quantity) as units_sold,
        sum(line_amount) as revenue_exact
    from {{ ref('fct_order_items') }}
    where is_revenue_eligible
    group by product_id

)

select
    cast(row_number() over (
        order by product_revenue.revenue_exact desc, product_revenue.product_id asc
    ) as integer) as revenue_rank,
    product_revenue.product_id,
    products.product_name,
    products.category,
    {{ reporting_currency() }} as currency,
    cast(product_revenue.units_sold as bigint) as units_sold,
    {{ cents('product_revenue.revenue_exact') }} as revenue,
    cast(product_revenue.revenue_exact as decimal(38, 4)) as revenue_exact
from product_revenue
left join {{ ref('dim_products') }} as products
    on product_revenue.product_id = products.product_id
