{#
    The order statuses and their precedence, stated once (METRICS.md, "Current order status").

    In lifecycle order: an order is in the last status of this list whose milestone it has
    reached, so a later status overrides every earlier one (CANCELED, then REFUNDED, override
    the rest; an order both canceled and refunded is CANCELED). `reached_when` is the condition
    on int_orders' milestone columns; CREATED, the first, holds for every order.

    Read by int_orders (order_status_case), by gold.dim_order_statuses (the list as a table,
    which orders_by_status, the dashboard and Power BI read) and by the generic test
    is_order_status.
#}
{% macro order_statuses() -%}
    {{ return([
        {'status': 'CREATED', 'reached_when': 'true',
         'description': 'Created; no payment outcome yet.'},
        {'status': 'PAYMENT_FAILED',
         'reached_when': 'failed_payments > 0 and first_authorized_at is null',
         'description': 'Only failed payment attempts (no successful authorization).'},
        {'status': 'PAID', 'reached_when': 'first_captured_at is not null',
         'description': 'A payment was captured.'},
        {'status': 'SHIPPED', 'reached_when': 'first_dispatched_at is not null',
         'description': 'A shipment was dispatched.'},
        {'status': 'DELIVERED', 'reached_when': 'first_delivered_at is not null',
         'description': 'A shipment was delivered.'},
        {'status': 'REFUNDED', 'reached_when': 'first_refunded_at is not null',
         'description': 'A payment was refunded (overrides the milestones above).'},
        {'status': 'CANCELED', 'reached_when': 'first_canceled_at is not null',
         'description': 'The order was canceled (overrides everything).'},
    ]) }}
{%- endmacro %}


{# The status of an order: the furthest status whose milestone it reached. #}
{% macro order_status_case() -%}
    case
        {%- for status in order_statuses() | reverse %}
        {%- if not loop.last %}
        when {{ status.reached_when }} then '{{ status.status }}'
        {%- else %}
        else '{{ status.status }}'
        {%- endif %}
        {%- endfor %}
    end
{%- endmacro %}
