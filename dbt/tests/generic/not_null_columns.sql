{#-
    None of the listed columns is null: the rows where any of them is, in one query. Silver's
    models and Bronze's tables declare their not-null columns this way, one test per model
    instead of one per column: each dbt node costs tens of milliseconds of dbt's own work
    whatever it reads, and 73 not_null tests were a third of an incremental build's nodes
    (docs/transform.md#performance). The failing rows (`test_failures.<test>`) show which.
-#}
{% test not_null_columns(model, column_names) %}

select *
from {{ model }}
where {{ column_names | join(' is null or ') }} is null

{% endtest %}
