-- hash_values (macros/hashing.sql) encodes its values unambiguously: each pair of value lists
-- below differs, so their hashes must differ too. Every pair collided with the concat_ws('|')
-- hashes it replaced (on DuckDB, which skips NULLs; Snowflake made every one of them NULL).
with

pairs as (

    select
        'a | moved between columns' as pair,
        {{ hash_values(["'a|b'", "'c'"]) }} as left_hash,
        {{ hash_values(["'a'", "'b|c'"]) }} as right_hash
    union all
    select
        'NULL against the empty string' as pair,
        {{ hash_values(["cast(null as varchar)", "'x'"]) }} as left_hash,
        {{ hash_values(["''", "'x'"]) }} as right_hash
    union all
    select
        'NULL against the string NULL' as pair,
        {{ hash_values(["cast(null as varchar)", "'x'"]) }} as left_hash,
        {{ hash_values(["'NULL'", "'x'"]) }} as right_hash
    union all
    select
        'a NULL moved between columns' as pair,
        {{ hash_values(["cast(null as varchar)", "'x'"]) }} as left_hash,
        {{ hash_values(["'x'", "cast(null as varchar)"]) }} as right_hash
    union all
    select
        'a length prefix spelled inside a value' as pair,
        {{ hash_values(["'1:a'", "''"]) }} as left_hash,
        {{ hash_values(["'a'", "'0:'"]) }} as right_hash
    union all
    select
        'the NULL marker as a value' as pair,
        {{ hash_values(["'~'"]) }} as left_hash,
        {{ hash_values(["cast(null as varchar)"]) }} as right_hash

)

select pair
from pairs
where left_hash = right_hash or left_hash is null or right_hash is null
