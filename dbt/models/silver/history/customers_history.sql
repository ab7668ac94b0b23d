{{ config(unique_key='customer_id') }}

-- SCD type 2 history of customers from the snapshot loads (see macros/scd2.sql).
{{ scd2_history(
    'stg_bronze__customers',
    key='customer_id',
    version_id='customer_version_id',
    attributes=['customer_name', 'email', 'country_code', 'signed_up_at'],
) }}
