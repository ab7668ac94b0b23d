{#- Every non-null value lies in [min_value, max_value] (either bound optional). -#}
{% test accepted_range(model, column_name, min_value=none, max_value=none) %}

{%- set min_check = column_name ~ ' < ' ~ min_value if min_value is not none else 'false' -%}
{%- set max_check = column_name ~ ' > ' ~ max_value if max_value is not none else 'false' -%}

select {{ column_name }}
from {{ model }}
where
    {{ column_name }} is not null
    and ({{ min_check }} or {{ max_check }})

{% endtest %}
