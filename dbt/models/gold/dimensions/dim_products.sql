/*
    One row per product: the current version from the reference snapshots, plus an inferred
    member for every product a basket names that no snapshot has listed yet.
*/
with

current_versions as (

    select * from {{ ref('products_history') }}
    where is_current

),

inferred as (

    select distinct items.product_id
    from {{ ref('int_order_items') }} as items
    where
        not exists (
            select 1
            from current_versions
            where current_versions.product_id = items.product_id
        )

)

select
    product_id,
    product_name,
    category,
    price as list_price,
    is_active,
    valid_from as version_valid_from,
    false as is_inferred
from current_versions
union all
select
    product_id,
    null as product_name,
    null as category,
    null as list_price,
    null as is_active,
    null as version_valid_from,
    true as is_inferred
from inferred
