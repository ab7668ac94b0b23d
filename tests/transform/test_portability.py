"""The dbt project stays one project for DuckDB and Snowflake (issue 9).

Dialect differences live only in the `duckdb__` / `snowflake__` variants of dispatched macros
(dbt/macros/dialect.sql); everything else is SQL that both warehouses accept. Two checks that
need no warehouse:

* a lint: DuckDB-only constructs fail the test when they appear in models, tests, macros or
  unit-test SQL fixtures outside the variants of a dispatched macro (or outside the DuckDB
  branch of a fixture's `target.type` switch), and every dispatched macro has both variants;
* `dbt parse --target snowflake` with dummy SNOWFLAKE_* settings: it connects to nothing.

Neither proves the Snowflake SQL runs: that is the emulator build (docs/transform.md,
"Dialects"), and for what no emulator checks, a real account.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from retail_pipeline.transform import project_dir
from tests.services import unavailable

_TYPES = (
    r"hugeint|uhugeint|ubigint|uinteger|usmallint|utinyint|varint|bignum|struct|map|union|list"
    r"|json|timestamp_s|timestamp_ms|timestamp_ns"
)
# Patterns about string literals themselves, matched with the literals' contents (the others
# are matched with every literal blanked: the JSON text of a fixture is not SQL).
INFINITY = r"'[+-]?infinity'"
BACKSLASH = r"'[^'\n]*\\[^'\n]*'"
LITERAL_PATTERNS = {INFINITY, BACKSLASH}
# DuckDB-only SQL: (pattern, what to write instead). Matched case-insensitively on SQL with the
# Jinja tags, Jinja expressions and SQL comments taken out.
DUCKDB_ONLY: list[tuple[str, str]] = [
    (r"\bepoch(?:_ms|_us|_ns)?\s*\(", "epoch_microseconds() or utc_date()"),
    (r"\barg_(?:min|max)(?:_null)?\s*\(", "min_by()/max_by(); a tuple key: qualify row_number()"),
    (r"\bfilter\s*\(\s*where\b", "aggregate FILTER (WHERE): count(case when ... then 1 end)"),
    (r"\bgenerate_(?:series|subscripts)\s*\(", "calendar_days() / basket_lines()"),
    (r"\bunnest\s*\(", "basket_lines() (Snowflake: lateral flatten)"),
    (
        r"\b(?:isodow|isoyear|weekofyear|yearweek|dayofweek|monthname|dayname)\s*\(",
        "iso_day_of_week() / iso_week(); month and day names spelled out",
    ),
    (INFINITY, "no infinite timestamps on Snowflake: earliest_timestamp()"),
    (r"\b(?:strftime|strptime)\s*\(", "a dispatched macro (Snowflake: to_char / to_timestamp)"),
    (r"\bregexp_\w+\s*\(", "a dispatched macro: escapes and flags differ (mask_numbers())"),
    (BACKSLASH, "a backslash in a '...' literal is an escape on Snowflake"),
    (r"\b(?:list|struct)_\w+\s*\(|\b(?:list|row|from_json)\s*\(", "DuckDB lists and structs"),
    (r"\[\s*\{", "a list-of-struct literal: a target.type switch in the fixture"),
    (r"\{\s*'[^'\n]*'\s*:", "a struct literal: a target.type switch in the fixture"),
    (rf"(?:::|\bas)\s*(?:{_TYPES})\b", "a cast to a DuckDB-only type"),
    (r"\btimestamptz\s+'", "typed literal: cast('...' as timestamptz)"),
    (r"\binterval\s+\d", "interval '1 day' (quoted)"),
    (r"\b(?:un)?pivot\b(?!\s*\()", "the standard form: unpivot (value for name in (...))"),
    (r"\bdate_diff\s*\(|\bdatediff\s*\(\s*'", "datediff(day, a, b) (unquoted part)"),
]

_IF_SNOWFLAKE = re.compile(
    r"{%-?\s*if\s+target\.type\s*(==|!=)\s*['\"]snowflake['\"]\s*-?%}(.*?)"
    r"(?:{%-?\s*else\s*-?%}(.*?))?{%-?\s*endif\s*-?%}",
    re.S,
)
# The variants of dispatched macros: each is its own dialect's SQL.
_DIALECT_MACRO = re.compile(
    r"{%-?\s*macro\s+(?:duckdb|default|snowflake)__\w+\s*\(.*?{%-?\s*endmacro\s*-?%}", re.S
)
_DISPATCH = re.compile(r"adapter\.dispatch\(\s*['\"](\w+)['\"]")
_MACRO_NAME = re.compile(r"{%-?\s*macro\s+(\w+)\s*\(")


@dataclass(frozen=True)
class Finding:
    where: str
    line: int
    text: str
    advice: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.text!r}: {self.advice}"


def as_snowflake_sees_it(source: str) -> str:
    """The SQL that reaches Snowflake, as far as this lint can tell: `target.type` switches take
    their Snowflake branch, the `<adapter>__` variants of dispatched macros are gone, and so are
    Jinja tags and comments and SQL comments (blanked, so that line numbers stay). `{{ ... }}`
    becomes a name.
    """

    def snowflake_branch(match: re.Match[str]) -> str:
        chosen = match[2] if match[1] == "==" else (match[3] or "")
        dropped = match[0].replace(chosen, "", 1)
        return chosen + "\n" * dropped.count("\n")

    def blank(match: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", match[0])

    text = _IF_SNOWFLAKE.sub(snowflake_branch, source)
    text = _DIALECT_MACRO.sub(blank, text)
    text = re.sub(r"{#.*?#}", blank, text, flags=re.S)
    text = re.sub(r"{%.*?%}", blank, text, flags=re.S)
    text = re.sub(r"{{.*?}}", lambda m: "jinja" + blank(m)[5:], text, flags=re.S)
    text = re.sub(r"/\*.*?\*/", blank, text, flags=re.S)
    return re.sub(r"--[^\n]*", blank, text)


def lint(source: str, where: str) -> list[Finding]:
    """DuckDB-only constructs in one file's (or fixture's) SQL."""
    text = as_snowflake_sees_it(source)
    code = re.sub(r"'(?:[^']|'')*'", lambda m: "'" + re.sub(r"[^\n]", " ", m[0][1:-1]) + "'", text)
    findings = []
    for pattern, advice in DUCKDB_ONLY:
        searched = text if pattern in LITERAL_PATTERNS else code
        for match in re.finditer(pattern, searched, flags=re.I):
            line = text.count("\n", 0, match.start()) + 1
            findings.append(Finding(where, line, match[0], advice))
    return findings


def sql_fixtures(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(unit test, SQL) of every `format: sql` fixture, given or expected, in a YAML document."""
    found = []
    for test in document.get("unit_tests") or []:
        for fixture in [*(test.get("given") or []), test.get("expect") or {}]:
            if fixture.get("format") == "sql":
                found.append((test["name"], fixture["rows"]))
    return found


def project_findings(dbt_dir: Path) -> list[Finding]:
    findings = []
    for folder in ("models", "tests", "macros"):
        for path in sorted((dbt_dir / folder).rglob("*.sql")):
            findings += lint(path.read_text(), str(path.relative_to(dbt_dir)))
    for path in sorted((dbt_dir / "models").rglob("*.yml")):
        for test, sql in sql_fixtures(yaml.safe_load(path.read_text()) or {}):
            findings += lint(sql, f"{path.relative_to(dbt_dir)} unit test {test}")
    return findings


def test_no_duckdb_only_sql_outside_the_duckdb_macros() -> None:
    findings = project_findings(project_dir())
    assert not findings, "DuckDB-only SQL (move it into a dispatched macro):\n" + "\n".join(
        map(str, findings)
    )


def test_every_dispatched_macro_has_a_duckdb_and_a_snowflake_variant() -> None:
    macros = "\n".join(p.read_text() for p in sorted((project_dir() / "macros").rglob("*.sql")))
    defined = set(_MACRO_NAME.findall(macros))
    dispatched = set(_DISPATCH.findall(macros))
    assert dispatched, "no adapter.dispatch in dbt/macros"
    missing = sorted(
        variant
        for name in dispatched
        for variant in (f"duckdb__{name}", f"snowflake__{name}")
        if variant not in defined and variant.replace("duckdb__", "default__") not in defined
    )
    assert not missing, f"dispatched macros without a variant: {missing}"


# What the models looked like before issue 9 (one line of each kind), and what the lint must
# keep letting through: so that a lint that stopped matching anything fails here too.
OLD_SQL = [
    "(date '1970-01-01' + cast(floor(epoch_ms(event_timestamp) / 86400000) as integer))",
    "md5(concat_ws('|', name, cast(epoch_us(created_at) as varchar)))",
    "select coalesce(max(_ingested_at), '-infinity'::timestamptz) from t",
    "min(event_at) filter (where event_type = 'order_created') as created_at",
    "arg_min(customer_id, event_at) as customer_id",
    "arg_max(event_id, (event_at, event_type = 'order_updated', event_id)) as basket_event_id",
    "select unnest(items) as item, generate_subscripts(items, 1) as line_number from baskets",
    "select cast(unnest(generate_series(a, b, interval 1 day)) as date) as date_day from bounds",
    "monthname(date_day) as month_name",
    "cast(isodow(date_day) as integer) as iso_day_of_week",
    "cast(weekofyear(date_day) as integer) as iso_week",
    "regexp_replace(reason, '(^|\\s)-?[0-9]+(\\.[0-9]+)?', '\\1N', 'g') as reason_group",
    "from (unpivot order_rates on a, b into name rate_name value rate) as unpivoted",
    "[{'product_id': 'p1', 'quantity': 1::bigint, 'unit_price': 5.00::decimal(20, 4)}] as items",
    "timestamptz '2026-01-01 10:00:00+00' as event_at",
    "cast(x as hugeint)",
]
PORTABLE_SQL = [
    "min(case when event_type = 'order_created' then event_at end) as created_at",
    "count(case when is_converted then 1 end) as orders_converted",
    "min_by(customer_id, case when event_type = 'order_created' then event_at end)",
    "from order_rates unpivot (rate for rate_name in (a, b)) as unpivoted",
    "cast('2026-01-01 10:00:00+00:00' as timestamptz) as event_at, interval '60 minutes'",
    "{{ utc_date('event_timestamp') }} as event_date  -- not epoch_ms(), see unnest()",
    "{% macro duckdb__x(c) %}epoch_ms({{ c }}){% endmacro %}{% macro snowflake__x(c) %}"
    "date_part(epoch_millisecond, {{ c }}){% endmacro %}",
    "{% if target.type == 'snowflake' %}parse_json('[{\"a\": 1}]'){% else %}[{'a': 1}]{% endif %}",
    "{% set names = {'a': 1} %}{# unnest(x) #} /* arg_max(a, b) */ select 1",
]


@pytest.mark.parametrize("sql", OLD_SQL)
def test_the_lint_catches_the_old_duckdb_only_sql(sql: str) -> None:
    assert lint(sql, "old"), sql


@pytest.mark.parametrize("sql", PORTABLE_SQL)
def test_the_lint_lets_portable_sql_and_duckdb_macros_through(sql: str) -> None:
    assert not lint(sql, "portable"), lint(sql, "portable")


@pytest.fixture
def dbt_snowflake() -> None:
    """dbt-snowflake (the ``snowflake`` extra): a skip without it, a failure under CI=true."""
    if importlib.util.find_spec("dbt.adapters.snowflake") is None:
        unavailable(
            "dbt-snowflake", "the Snowflake dbt checks", "not installed (pip install -e '.[dev]')"
        )


SNOWFLAKE_ENV = {
    "SNOWFLAKE_ACCOUNT": "ci-dummy",
    "SNOWFLAKE_USER": "ci",
    "SNOWFLAKE_PASSWORD": "not-a-password",
}


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "DBT_"))}
    env.pop("RETAIL_DBT_ENFORCE_CONTRACTS", None)
    return {**env, **SNOWFLAKE_ENV, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **extra}


@pytest.mark.usefixtures("dbt_snowflake")
def test_dbt_parses_for_snowflake_offline(tmp_path: Path) -> None:
    """No account, no emulator: parsing renders every model, test and macro call for Snowflake."""
    dbt_dir = project_dir()
    out = subprocess.run(
        [
            sys.executable, "-m", "dbt.cli.main", "parse",
            "--target", "snowflake",
            "--project-dir", str(dbt_dir), "--profiles-dir", str(dbt_dir),
            "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"),
            "--no-partial-parse",
        ],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=dbt_dir,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert (tmp_path / "target" / "manifest.json").exists()


_PROFILE_PROBE = """
import json, os, sys
from dbt_common.context import set_invocation_context
from dbt.config.profile import Profile, read_profile
from dbt.config.renderer import ProfileRenderer
from dbt.flags import set_from_args
from argparse import Namespace
set_from_args(Namespace(), None)
set_invocation_context(os.environ)
raw = read_profile(sys.argv[1])
profile = Profile.from_raw_profile_info(raw["retail"], "retail", ProfileRenderer({}), "snowflake")
c = profile.credentials
print(json.dumps({k: getattr(c, k) for k in (
    "password", "private_key_path", "private_key_passphrase", "host", "port", "protocol",
    "connect_retries", "connect_timeout")}))
"""


@pytest.mark.dbt  # dbt reads and renders the profile in a subprocess: ~3 s each
@pytest.mark.usefixtures("dbt_snowflake")
@pytest.mark.parametrize("key_pair", [False, True], ids=["password", "key-pair"])
def test_the_snowflake_profile_uses_a_key_pair_when_one_is_set(
    tmp_path: Path, key_pair: bool
) -> None:
    extra = (
        {"SNOWFLAKE_PRIVATE_KEY_PATH": "/keys/rsa_key.p8", "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "pp"}
        if key_pair
        else {}
    )
    out = subprocess.run(
        [sys.executable, "-c", _PROFILE_PROBE, str(project_dir())],
        capture_output=True,
        text=True,
        env=_clean_env(**extra),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    credentials = json.loads(out.stdout.strip().splitlines()[-1])
    # An empty value is dropped by dbt-snowflake: one authentication method at a time.
    if key_pair:
        assert credentials["password"] == ""
        assert credentials["private_key_path"] == "/keys/rsa_key.p8"
        assert credentials["private_key_passphrase"] == "pp"
    else:
        assert credentials["password"] == SNOWFLAKE_ENV["SNOWFLAKE_PASSWORD"]
        assert credentials["private_key_path"] == ""
        assert credentials["private_key_passphrase"] == ""
    # A real account: no host (dbt-snowflake drops an empty one), https on 443.
    assert credentials["host"] == ""
    assert (credentials["port"], credentials["protocol"]) == (443, "https")
    assert (credentials["connect_retries"], credentials["connect_timeout"]) == (1, 10)
