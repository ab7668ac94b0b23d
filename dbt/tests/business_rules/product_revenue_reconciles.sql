-- Product revenue adds up to the latest baskets of the eligible orders, and only those.
with

ranked as (

    select
        currency,
        sum(revenue) as revenue,
        sum(units_sold) as units
    from {{ ref('top_products') }}
    group by currency

),

baskets as (

    select
        currency,
        sum(basket_total) as revenue,
        sum(basket_units) as units
    from {{ ref('fct_orders') }}
    where is_revenue_eligible
    group by currency

)

select
    coalesce(ranked.currency, baskets.currency) as currency,
    ranked.revenue as ranked_revenue,
    baskets.revenue as basket_revenue,
    ranked.units as ranked_units,
    baskets.units as basket_units
from ranked
full outer join baskets on ranked.currency = baskets.currency
where
    ranked.revenue is distinct from baskets.revenue
    or ranked.units is distinct from baskets.units
