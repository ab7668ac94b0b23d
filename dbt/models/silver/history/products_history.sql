{{ config(unique_key='product_id') }}

-- SCD type 2 history of products from the snapshot loads (see macros/scd2.sql).
{{ scd2_history(
    'stg_bronze__products',
    key='product_id',
    version_id='product_version_id',
    attributes=['product_name', 'category', 'price', 'is_active'],
) }}
