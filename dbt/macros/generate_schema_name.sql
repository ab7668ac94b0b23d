{#
    Layers land in schemas named exactly `silver` and `gold` (not `<target schema>_silver`), in
    every target, so readers and grants never depend on who ran dbt. Models without a custom
    schema fall back to the target schema.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
