{#
    dbt's data-test materialization, changed in one respect: a test's failing rows are kept
    (the `test_failures` view, `store_failures_as: view`) only when the test does not pass.

    dbt's own materialization drops the test's view and creates it again on every run, pass or
    fail, then counts the failures from the view: three statements where one query does, and
    on a small incremental build half the time of its 90-odd tests (issue 26; measured in
    docs/transform.md, "Where a small build's time goes"). Here the count runs first, as one
    query; a test that warns or fails then keeps its failing rows in the view, which a failed
    build's message names (`failing rows: select * from test_failures.<test>`); a test that
    passes drops a view left by an earlier failure (a lookup in dbt's relation cache, no
    query, when there is none), so `test_failures` holds exactly the tests failing now.

    On DuckDB the count runs outside a transaction: a read-only query commits nothing, and
    dbt's begin and commit around it cost more than the query on a small increment. Other
    adapters keep dbt's transaction handling. A root-project materialization named `default`
    takes precedence over dbt's and the adapters' (dbt-snowflake's only sets a query tag).
#}
{%- materialization test, default -%}

    {% set relations = [] %}
    {% set limit = config.get('limit') %}
    {% set sql_header = config.get('sql_header') if flags.REQUIRE_SQL_HEADER_IN_TEST_CONFIGS else none %}
    {% set sql_with_limit %}
        {{ get_limit_subquery_sql(sql, limit) }}
    {% endset %}

    {% call statement('main', fetch_result=True, auto_begin=(target.type != 'duckdb')) -%}
        {% if sql_header %}{{ sql_header }}{% endif %}
        {{ get_test_sql(sql_with_limit, config.get('fail_calc'), config.get('warn_if'), config.get('error_if'), limit=none) }}
    {%- endcall %}

    {% if should_store_failures() %}
        {#- column names as the warehouse spells them (Snowflake: upper case) -#}
        {% set result = load_result('main')['table'] %}
        {% set outcome = {} %}
        {% for name in result.column_names %}
            {% do outcome.update({name | lower: result.rows[0][loop.index0]}) %}
        {% endfor %}
        {% set store_failures_as = config.get('store_failures_as') or 'table' %}
        {% if store_failures_as not in ['table', 'view'] %}
            {{ exceptions.raise_compiler_error(
                "'" ~ store_failures_as ~ "' is not a valid value for `store_failures_as`. "
                "Accepted values are: ['ephemeral', 'table', 'view']"
            ) }}
        {% endif %}
        {% set old_relation = adapter.get_relation(database=database, schema=schema, identifier=model['alias']) %}
        {% if outcome['should_warn'] or outcome['should_error'] %}
            {% set target_relation = api.Relation.create(
                identifier=model['alias'], schema=schema, database=database, type=store_failures_as) %}
            {% if old_relation %}
                {% do adapter.drop_relation(old_relation) %}
            {% endif %}
            {% call statement(auto_begin=True) %}
                {% if sql_header %}{{ sql_header }}{% endif %}
                {{ get_create_sql(target_relation, sql_with_limit) }}
            {% endcall %}
            {% do relations.append(target_relation) %}
            {{ adapter.commit() }}
        {% elif old_relation %}
            {#- committed with the node (dbt commits an open transaction after each node) -#}
            {% do adapter.drop_relation(old_relation) %}
        {% endif %}
    {% endif %}

    {{ return({'relations': relations}) }}

{%- endmaterialization -%}
