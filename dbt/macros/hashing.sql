{#
    Hashes of several values, for change detection (SCD2 attributes) and surrogate keys.

    The values are encoded unambiguously before md5: each one as its length in characters, a
    colon and its text (`3:a|b`), a NULL as `~` (a length never starts with one), the pieces
    concatenated. No value can reach into its neighbour, so ('a|b', 'c') and ('a', 'b|c') hash
    differently, and NULL, '' and the string 'NULL' are three different values. concat_ws('|', …)
    gave none of this: a `|` inside a value moved between columns unseen, DuckDB skips NULL
    arguments (so (NULL, 'x') and ('x', NULL) were equal) and Snowflake returns NULL for the
    whole string (so every change of a row with a NULL attribute was lost).

    length() counts characters on both targets and `||` is NULL when a side is, so the same SQL
    serves DuckDB and Snowflake; each expression is cast to varchar, so pass timestamps through
    timestamp_key() (a varchar of a timestamp follows session settings on Snowflake).
#}
{% macro hash_values(expressions) -%}
    md5(
        {%- for expression in expressions %}
        coalesce(
            cast(length(cast({{ expression }} as varchar)) as varchar)
            || ':' || cast({{ expression }} as varchar),
            '~'
        ){{ " ||" if not loop.last }}
        {%- endfor %}
    )
{%- endmacro %}
