-- Every message a loader read is in Bronze or the dead-letter table (read = loaded + dead).
select
    check_name,
    topic,
    detail,
    row_count
from {{ ref('data_quality_summary') }}
where check_name = 'load_mismatch' and row_count != 0
