-- One row per order status, in lifecycle order: a later status overrides an earlier one.
select
    status_list.order_status,
    cast(status_list.status_order as integer) as status_order,
    status_list.status_description
from (
    values
    {%- for status in order_statuses() %}
    {%- set description = status.description | replace("'", "''") %}
    ({{ loop.index }}, '{{ status.status }}', '{{ description }}'){{ ',' if not loop.last }}
    {%- endfor %}
) as status_list (status_order, order_status, status_description)
