{#
    What a data test reads: the whole model, or on an incremental build only the rows the build
    wrote (issue 26: the cost of a build follows its increment, not the history).

    The environment variable RETAIL_DBT_TESTS_SCOPE decides: `all` (unset: a plain `dbt build`
    checks everything) or `increment`, which `retail-pipeline transform` sets on an incremental
    run (docs/transform.md, "What an incremental build tests"). The runner hands it and
    RETAIL_DBT_BRONZE_TESTED_SINCE over as environment variables read only while nodes execute,
    never while dbt parses: vars that changed every build would make dbt parse the whole
    project again each time. In `increment` scope:

    - a test of an incremental model reads the rows this invocation wrote: every such row is
      stamped `_silver_loaded_at` with the invocation's start (staging stamps the rows it
      appends; every model downstream recomputes a touched key from all its events and carries
      the newest stamp, so a rewritten row always has this run's stamp, and an untouched row
      an older one). A full refresh rewrites every row, so the same filter reads the whole
      model there;
    - `unique` and `unique_combination_of_columns` read the written rows too: no key twice among
      them. A written row cannot repeat an old row's key by construction (staging appends only
      keys it has not staged, an anti-join; the per-key models delete a key's rows before they
      insert it again), and checking that against every old row is a scan of the whole key
      column (a quarter of a +1% build at 10M events), left to the whole-table runs;
    - a test of a Bronze source reads the rows ingested after RETAIL_DBT_BRONZE_TESTED_SINCE
      (the runner passes the newest `_ingested_at` the last successful build had read, less
      the staging lookback);
    - a test of a table (marts, dimensions, quality; rebuilt whole, and small) reads it whole.

    Unit tests and the singular tests that reconcile whole tables (tag `whole_table`) are left
    out of an incremental build by the runner; they run in full builds, in CI and in
    `transform --all-tests`, which is meant to run on a schedule.

    dbt's own `get_where_subquery` (its `where` config) is kept: a test's `where` narrows
    further.
#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- do conditions.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- set scope = increment_condition(relation) -%}
    {%- if scope -%}
        {%- do conditions.append(scope) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' as tested_row where ' ~ conditions | join(' and ') ~ ') as dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}


{#- True when data tests read only what an incremental build wrote (never while parsing). -#}
{% macro tests_read_increment() -%}
    {%- if not execute or flags.FULL_REFRESH -%}
        {%- do return(false) -%}
    {%- endif -%}
    {%- do return(env_var('RETAIL_DBT_TESTS_SCOPE', 'all') == 'increment') -%}
{%- endmacro %}


{#
    The condition (SQL, on the columns of `relation`) that keeps the rows a test of the current
    test node reads in `increment` scope; empty to read everything.
#}
{% macro increment_condition(relation) -%}
    {%- if not tests_read_increment() or model is not mapping -%}
        {%- do return('') -%}
    {%- endif -%}
    {%- set attached = model.get('attached_node') -%}
    {%- set parents = model.get('depends_on', {}).get('nodes', []) -%}
    {%- if attached and attached in graph.nodes -%}
        {%- set node = graph.nodes[attached] -%}
        {%- if node.config.materialized != 'incremental' -%}
            {%- do return('') -%}
        {%- endif -%}
        {#- a model stamping its rows under another name says so (meta build_stamp_column) -#}
        {%- set column = (node.config.get('meta') or {}).get('build_stamp_column', '_silver_loaded_at') -%}
        {%- set written = column ~ ' >= ' ~ silver_load_stamp() -%}
        {%- do return(written) -%}
    {%- elif parents and parents[0].startswith('source.') -%}
        {%- set since = env_var('RETAIL_DBT_BRONZE_TESTED_SINCE', '') -%}
        {%- if since and not since.strip('0123456789:. T+-') -%}
            {%- do return("_ingested_at > cast('" ~ since ~ "' as timestamptz)") -%}
        {%- endif -%}
    {%- endif -%}
    {%- do return('') -%}
{%- endmacro %}


{#
    For singular tests of an incremental model: a condition keeping the rows this build wrote
    in `increment` scope (true otherwise).
#}
{% macro written_by_this_build() -%}
    {%- if tests_read_increment() -%}
        _silver_loaded_at >= {{ silver_load_stamp() }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

