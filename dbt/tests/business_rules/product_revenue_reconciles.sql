{{ config(tags=['whole_table']) }}

-- Product revenue adds up, exactly, to the latest baskets of the eligible orders (captured,
-- neither canceled nor refunded, in the reporting currency), and only those; each product's
-- reported revenue is its exact revenue rounded to cents once.
with

ranked as (

    select
        sum(revenue_exact) as revenue,
        sum(units_sold) as units,
        count(case when revenue != round(revenue_exact, 2) then 1 end) as misrounded
    from {{ ref('top_products') }}

),

baskets as (

    select
        sum(basket_total) as revenue,
        sum(basket_units) as units
    from {{ ref('fct_orders') }}
    where is_revenue_eligible

)

select
    ranked.revenue as ranked_revenue,
    baskets.revenue as basket_revenue,
    ranked.units as ranked_units,
    baskets.units as basket_units,
    ranked.misrounded
from ranked
cross join baskets
where
    coalesce(ranked.revenue, 0) != coalesce(baskets.revenue, 0)
    or coalesce(ranked.units, 0) != coalesce(baskets.units, 0)
    or ranked.misrounded > 0
