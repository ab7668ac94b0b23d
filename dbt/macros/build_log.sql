{#
    gold.build_log: one row per `dbt build`, `run` or `test` invocation, appended by the
    project's on-run-end hook (dbt_project.yml), which dbt runs after the last node whether
    nodes failed or not. `retail-pipeline health` reads its newest row as gold.last_build: the
    result of the last build, failed or not (gold.build_info is only written by a build whose
    every upstream node passed). It is not a model: dbt never drops or rebuilds it, so it
    survives --full-refresh and keeps its history (append-only, a few hundred bytes a run).

    Other invocations (source freshness, which runs project hooks too; compile, docs) build
    nothing and are not logged. A partial run (--select) is logged with its selection. An
    invocation dbt cannot start (a project that does not parse) runs no hook and logs nothing;
    `transform` fails loudly then.
#}
{% macro log_build(results) -%}
    {%- if execute and flags.WHICH in ('build', 'run', 'test') -%}
        {%- set relation = api.Relation.create(
            database=target.database,
            schema=generate_schema_name('gold', none),
            identifier='build_log'
        ) -%}
        {%- set nodes = [] -%}
        {%- set failed = [] -%}
        {%- for result in results if result.node.resource_type != 'operation' -%}
            {%- do nodes.append(result) -%}
            {%- if result.status in ('error', 'fail', 'runtime error') -%}
                {%- do failed.append(result) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- set first = failed[0].node if failed else none -%}
        {%- set selected = invocation_args_dict.get('select') -%}
        {%- if selected and selected is not string -%}
            {%- set selected = selected | join(' ') -%}
        {%- endif -%}
        {%- do adapter.create_schema(relation) -%}
        create table if not exists {{ relation }} (
            invocation_id varchar,
            command varchar,
            selected varchar,
            is_full_refresh boolean,
            started_at timestamptz,
            finished_at timestamptz,
            status varchar,
            nodes integer,
            failed_nodes integer,
            first_failure varchar,
            first_failure_type varchar
        );
        insert into {{ relation }} (
            invocation_id, command, selected, is_full_refresh, started_at, finished_at, status,
            nodes, failed_nodes, first_failure, first_failure_type
        )
        select
            {{ build_log_text(invocation_id) }},
            {{ build_log_text(flags.WHICH) }},
            {{ build_log_text(selected or none) }},
            {{ 'true' if flags.FULL_REFRESH else 'false' }},
            cast('{{ run_started_at }}' as timestamptz),
            cast(current_timestamp as timestamptz),
            '{{ "error" if failed else "success" }}',
            {{ nodes | length }},
            {{ failed | length }},
            {{ build_log_text(first.name if first else none) }},
            {{ build_log_text(first.resource_type if first else none) }}
    {%- endif -%}
{%- endmacro %}


{#- A string literal holding `value` (null for none); the names are dbt's, quoted anyway. -#}
{% macro build_log_text(value) -%}
    {{ return(adapter.dispatch('build_log_text')(value)) }}
{%- endmacro %}

{% macro duckdb__build_log_text(value) -%}
    {{- 'null' if value is none else "'" ~ (value | string).replace("'", "''") ~ "'" -}}
{%- endmacro %}

{#- Snowflake reads a backslash in '...' as an escape. -#}
{% macro snowflake__build_log_text(value) -%}
    {%- set text = (value | string).replace('\\', '\\\\').replace("'", "''") -%}
    {{- 'null' if value is none else "'" ~ text ~ "'" -}}
{%- endmacro %}


{#
    The digest `retail-pipeline transform` made of this build's inputs (project, settings,
    Bronze marks), as a SQL literal for gold.build_info; null when dbt was run directly. Read
    only while nodes execute (macros/test_scope.sql says why); a digest is hex, anything else
    is dropped.
#}
{% macro build_input_signature() -%}
    {%- set signature = env_var('RETAIL_DBT_INPUT_SIGNATURE', '') if execute else '' -%}
    {%- set hex = signature and signature | length <= 64 and not signature.strip('0123456789abcdef') -%}
    {{- "'" ~ signature ~ "'" if hex else 'null' -}}
{%- endmacro %}
