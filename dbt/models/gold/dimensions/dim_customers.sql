/*
    One row per customer: the current version from the reference snapshots, plus an inferred
    member for every customer an order names that no snapshot has listed yet (reference data
    can lag the events), so every order finds its customer.

    No personal data: Gold is what the reporting role, the dashboard and Power BI read, and
    no answer needs a customer's name or e-mail (the dashboard slices by country). They stay
    in Silver (customers_history), which reporting cannot read.
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
    country_code,
    signed_up_at,
    valid_from as version_valid_from,
    false as is_inferred
from current_versions
union all
select
    customer_id,
    null as country_code,
    null as signed_up_at,
    null as version_valid_from,
    true as is_inferred
from inferred
