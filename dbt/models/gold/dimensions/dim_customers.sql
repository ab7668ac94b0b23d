/*
    One row per customer: the current version from the reference snapshots, plus an inferred
    member for every customer an order names that no snapshot has listed yet (reference data
    can lag the events), so every order finds its customer.
*/
with

current_versions as (

    select * from {{ ref('customers_history') }}
    where is_current

),

inferred as (

    select distinct orders.customer_id
    from {{ ref('int_orders') }} as orders
    where
        not exists (
            select 1
            from current_versions
            where current_versions.customer_id = orders.customer_id
        )

)

select
    customer_id,
    customer_name,
    email,
    country_code,
    signed_up_at,
    valid_from as version_valid_from,
    false as is_inferred
from current_versions
union all
select
    customer_id,
    null as customer_name,
    null as email,
    null as country_code,
    null as signed_up_at,
    null as version_valid_from,
    true as is_inferred
from inferred
