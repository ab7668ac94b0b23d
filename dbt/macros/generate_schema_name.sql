{#
    Layers land in schemas named by environment (docs/transform.md#environments), never after
    the target schema, so readers and grants do not depend on who ran dbt:
    - RETAIL_ENVIRONMENT=prod (the default): exactly `silver`, `gold` and `test_failures`;
    - dev or ci: `<prefix>_silver`, `<prefix>_gold` and `<prefix>_test_failures`, the prefix
      from RETAIL_SCHEMA_PREFIX (`retail-pipeline transform` passes the one its settings
      resolve, e.g. the OS user in dev; retail_pipeline.settings.layer_schema names the same).
    The prefix becomes part of a schema name in SQL: anything but [a-z][a-z0-9_]{0,30} stops
    the run, as does a prefix in prod or none in dev/ci. Bronze is a source, never built here.
    Models without a custom schema fall back to the target schema (prefixed likewise).
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set layer = target.schema if custom_schema_name is none else custom_schema_name | trim -%}
    {{ environment_schema_prefix() }}{{ layer }}
{%- endmacro %}

{#- The environment's schema prefix with its `_` (empty in prod), checked. -#}
{% macro environment_schema_prefix() -%}
    {%- set environment = env_var('RETAIL_ENVIRONMENT', '') or 'prod' -%}
    {%- set prefix = env_var('RETAIL_SCHEMA_PREFIX', '') -%}
    {%- if environment not in ['prod', 'dev', 'ci'] -%}
        {{ exceptions.raise_compiler_error(
            "RETAIL_ENVIRONMENT must be prod, dev or ci (docs/transform.md#environments)") }}
    {%- elif prefix and not modules.re.fullmatch('[a-z][a-z0-9_]{0,30}', prefix) -%}
        {{ exceptions.raise_compiler_error(
            "RETAIL_SCHEMA_PREFIX must be a lowercase identifier: a letter, then at most 30"
            ~ " letters, digits or _") }}
    {%- elif environment == 'prod' and prefix -%}
        {{ exceptions.raise_compiler_error(
            "RETAIL_SCHEMA_PREFIX is for RETAIL_ENVIRONMENT=dev or ci: production builds"
            ~ " silver and gold themselves") }}
    {%- elif environment != 'prod' and not prefix -%}
        {{ exceptions.raise_compiler_error(
            "RETAIL_ENVIRONMENT=" ~ environment ~ " builds into schemas of its own: set"
            ~ " RETAIL_SCHEMA_PREFIX") }}
    {%- elif prefix -%}
        {{ prefix }}_
    {%- endif -%}
{%- endmacro %}
