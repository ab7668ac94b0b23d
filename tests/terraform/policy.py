"""The least-privilege rules of the Snowflake roles, checked on the Terraform configuration.

:func:`violations` reads every ``.tf`` file under a configuration root (python-hcl2, no
Terraform, no account) and returns one line per grant that goes beyond the role model of
docs/terraform.md:

- loader: USAGE and CREATE STAGE on Bronze; INSERT on Bronze tables; SELECT, UPDATE or DELETE
  only on single named bookkeeping tables (``_META``, ``_LOADS``, ``_POSITIONS``), never
  schema-wide: it never reads the event, reference or dead-letter tables (personal data it does
  not need), and Bronze is append-only. Nothing in any other schema.
- transformer: USAGE on Bronze and SELECT on its tables and views; USAGE, CREATE TABLE and CREATE
  VIEW on Silver, Gold and the test-failure schema (plus DML on their tables).
- reporting: USAGE on Gold and SELECT on its tables and views. Nothing else.
- every role: USAGE on the database and on warehouses; nothing on the account. The transformer
  alone may also CREATE SCHEMA on the database (the ``<PREFIX>_SILVER``... of development and CI
  builds, docs/transform.md#environments), which makes it the owner of those schemas only.
- nobody: OWNERSHIP, ALL, MANAGE GRANTS, ``all_privileges``, ``with_grant_option``, database-wide
  or all-schemas grants, one pipeline role granted to another, a role granted to another role's
  user, ownership transfers, database roles, or GRANT/REVOKE in ``snowflake_execute``.
- people: only the reporting role is granted to the existing users and roles listed in
  ``var.reporter_grantees`` (one grant each, ``for_each`` over the list, the grantee
  ``each.key``), so a person reads Gold from Power BI and nothing else.

An external OAuth integration (Power BI SSO) names the roles its sessions may use
(``external_oauth_allowed_roles_list``) and does not let a token pick another one
(``external_oauth_any_role_mode = "DISABLE"``).

Every service user has the environment's network policy (``snowflake_network_policy.this``).

The objects that hold data (``KEEP_DATA``: the database, its schemas, the Bronze tables) set
``lifecycle { prevent_destroy = true }``, literally: destroying or replacing one would drop Bronze,
the only copy of the raw events (docs/terraform.md#terraform-keeps-the-data).

Grants may be written one a resource or as ``for_each`` over a local map of the same file whose
entries spell out the role, schema and privileges (``each.value.role``, ``each.value.schema``,
...): every entry is checked as its own grant. It fails closed: a grant whose role, schema or
privileges it cannot work out (a computed ``for_each``, an entry without a literal role, ...) is a
violation too.

:func:`role_grants` lists every privilege one role holds (for tests that pin a role's grants
exactly).

:func:`wiring` checks what feeds the roles_and_grants module: the composition module
(``modules/retail_platform``) must pass each layer's own schema, and every environment must call
it with three distinct role names.

:func:`personal_data_in_reporting` checks what the reporting role can read, Gold, and the Power
BI model built on it: no personal column of the reference data (a customer's name, e-mail)
under its Bronze or Silver name, in a Gold model's SQL, its documented columns, or a Power BI
table. It fails closed on a customer field the contract adds without saying whether it is
personal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2

ROLES = ("loader", "transformer", "reporting")
LAYER_VARIABLES = {
    "bronze_schema": "bronze",
    "silver_schema": "silver",
    "gold_schema": "gold",
    "test_failures_schema": "test_failures",
}
"""The roles_and_grants module's variable for each layer's schema."""
COMPOSITION = "modules/retail_platform"
"""The module that wires the others together; every environment calls it once."""
SYSTEM_ROLES = frozenset({"ACCOUNTADMIN", "SECURITYADMIN", "USERADMIN", "SYSADMIN", "PUBLIC"})
APPEND_ONLY_EXEMPT = frozenset({"_META", "_LOADS", "_POSITIONS"})
"""The bookkeeping tables the loader reads, updates or deletes from; every other Bronze table (the
event and reference tables, DEAD_LETTER) is append-only for it, and never read: they hold
personal data, and the loader reads back only its bookkeeping (warehouse/snowflake.py)."""
PERSONAL_FIELDS = {"customers": frozenset({"name", "email"})}
"""Reference fields that identify a person; they never reach Gold (reporting reads Gold)."""
NOT_PERSONAL_FIELDS = {
    "customers": frozenset({"customer_id", "country", "created_at"}),
    "products": frozenset({"product_id", "product_name", "category", "price", "active"}),
}
"""Reference fields checked and found not to identify a person (an id, a country, a date)."""

READ = frozenset({"SELECT"})
DML = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"})
BUILD = frozenset({"USAGE", "CREATE TABLE", "CREATE VIEW"})

# (role, layer) -> scope -> the most that role may hold there. Scopes: "schema" (on_schema),
# "objects" (all/future objects in the schema), "object" (one named object).
ALLOWED: dict[tuple[str, str], dict[str, frozenset[str]]] = {
    ("loader", "bronze"): {
        "schema": frozenset({"USAGE", "CREATE STAGE"}),
        "objects": frozenset({"INSERT"}),
        "object": frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"}),
    },
    ("transformer", "bronze"): {"schema": frozenset({"USAGE"}), "objects": READ, "object": READ},
    **{
        ("transformer", layer): {"schema": BUILD, "objects": DML, "object": DML}
        for layer in ("silver", "gold", "test_failures")
    },
    ("reporting", "gold"): {"schema": frozenset({"USAGE"}), "objects": READ, "object": READ},
}
ACCOUNT_OBJECTS = {"WAREHOUSE": frozenset({"USAGE"}), "DATABASE": frozenset({"USAGE"})}
ROLE_ACCOUNT_OBJECTS = {("transformer", "DATABASE"): frozenset({"CREATE SCHEMA"})}
"""Beyond :data:`ACCOUNT_OBJECTS`, per role: the transformer creates the schemas of isolated
environments (``var.environment_schemas``)."""
OBJECT_TYPES = {"TABLES", "VIEWS", "TABLE", "VIEW"}
NEVER = frozenset({"OWNERSHIP", "ALL", "ALL PRIVILEGES", "MANAGE GRANTS"})
PEOPLE_ROLE = "reporting"
# Resources whose destruction drops data: each must set lifecycle { prevent_destroy = true }.
KEEP_DATA = frozenset({"snowflake_database", "snowflake_schema", "snowflake_table"})
"""The one pipeline role granted to people (the users and roles of var.reporter_grantees)."""
GRANTEES = {
    "${toset(var.reporter_grantees.users)}": "user_name",
    "${toset(var.reporter_grantees.roles)}": "parent_role_name",
}
"""The ``for_each`` of a grant of a role to people, and the argument that names each of them."""

_OPTIONS = hcl2.SerializationOptions(
    with_comments=False, strip_string_quotes=True, explicit_blocks=False
)
_ROLE = re.compile(r"\$\{snowflake_account_role\.this\[([^\]]+)\]\.name\}")
_USER = re.compile(r"\$\{snowflake_service_user\.this\[([^\]]+)\]\.name\}")
_EACH = re.compile(r"\beach\.(key|value)(?:\.(\w+))?")
_QUOTED = re.compile(r'"(\w+)"')
_LOCAL = re.compile(r"\$\{local\.(\w+)\}")
_INNER = re.compile(r"^\$\{(.*)\}$", re.S)


class Unclear(Exception):
    """The checker cannot tell what a grant gives (a violation: it fails closed)."""


def load(path: Path) -> dict[str, Any]:
    """One ``.tf`` file, parsed (string quotes stripped, expressions as ``${...}``)."""
    with path.open() as file:
        parsed: dict[str, Any] = hcl2.load(file, serialization_options=_OPTIONS)
    return parsed


def _resources(parsed: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for block in parsed.get("resource", []):
        for kind, named in block.items():
            for name, body in named.items():
                yield kind, name, body


def _locals(parsed: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for block in parsed.get("locals", []):
        values.update(block)
    return values


def _instances(body: dict[str, Any], locals_: dict[str, Any]) -> list[tuple[str | None, Any]]:
    """(each.key, each.value) of every instance of a resource: one (None, None) without
    ``for_each``; ``for_each`` must be a local map of this file."""
    for_each = body.get("for_each")
    if for_each is None:
        return [(None, None)]
    match = _LOCAL.fullmatch(str(for_each))
    if not match or not isinstance(locals_.get(match[1]), dict):
        raise Unclear(f"for_each {for_each} is not a local map of the module")
    return list(locals_[match[1]].items())


def _each_value(match: re.Match[str], key: str | None, value: Any) -> Any:
    """What ``each.key``, ``each.value`` or ``each.value.<attribute>`` stands for."""
    if key is None:
        raise Unclear(f"{match[0]} without for_each")
    if match[1] == "key":
        return key
    if match[2] is None:
        return value
    if not isinstance(value, dict) or match[2] not in value:
        raise Unclear(f"{match[0]}: the for_each entry {key} has no {match[2]}")
    return value[match[2]]


def _field(body: dict[str, Any], field: str, key: str | None, value: Any) -> Any:
    """Argument ``field`` of one instance of a resource, ``each.*`` resolved: what a lone
    ``${each...}`` stands for (a literal, a list, or another ``${...}``), or the text with each
    ``each...`` inside it replaced by its (string) value."""
    raw = body.get(field)
    if not isinstance(raw, str):
        return raw
    whole = _INNER.fullmatch(raw)
    alone = whole and _EACH.fullmatch(whole[1].strip())
    if alone:
        return _each_value(alone, key, value)

    def substitute(match: re.Match[str]) -> str:
        found = _each_value(match, key, value)
        if not isinstance(found, str):
            raise Unclear(f"{match[0]} in {raw} is not a string")
        inner = _INNER.fullmatch(found)
        return inner[1] if inner else f'"{found}"'

    return _EACH.sub(substitute, raw)


def _index(pattern: re.Pattern[str], text: str, key: str | None, value: Any) -> str | None:
    """The literal key ``text`` indexes a resource with (``this["loader"]``,
    ``this[each.key]``, ``this[each.value.role]``), or None."""
    match = pattern.fullmatch(text)
    if not match:
        return None
    index = match[1].strip()
    if quoted := _QUOTED.fullmatch(index):
        return quoted[1]
    each = _EACH.fullmatch(index)
    found = each and _each_value(each, key, value)
    return found if isinstance(found, str) and not found.startswith("${") else None


def _role(body: dict[str, Any], field: str, key: str | None, value: Any) -> str:
    text = str(body.get(field, ""))
    role = _index(_ROLE, text, key, value)
    if not role or role not in ROLES:
        raise Unclear(f"{field} {text or '(none)'} is not one of the pipeline roles {ROLES}")
    return role


def _privileges(body: dict[str, Any], key: str | None, value: Any) -> frozenset[str]:
    privileges = _field(body, "privileges", key, value)
    if not isinstance(privileges, list) or not all(isinstance(p, str) for p in privileges):
        raise Unclear(f"privileges {privileges} are not a literal list")
    if any(p.startswith("${") for p in privileges):
        raise Unclear(f"privileges {privileges} are not all literals")
    return frozenset(p.upper() for p in privileges)


def _layers(text: str) -> set[str]:
    """The layers whose schema variable ``text`` names (every one it names)."""
    names = set(re.findall(r"\bvar\.(\w+)", text))
    layers = {LAYER_VARIABLES[name] for name in names if name in LAYER_VARIABLES}
    if not layers or names - set(LAYER_VARIABLES):
        raise Unclear(f"cannot tell which layer's schema {text} is")
    return layers


def _one(blocks: Any, what: str) -> dict[str, Any]:
    if not isinstance(blocks, list) or len(blocks) != 1 or not isinstance(blocks[0], dict):
        raise Unclear(f"{what} is not one plain block")
    block: dict[str, Any] = blocks[0]
    return block


def _grant(body: dict[str, Any], key: str | None, value: Any) -> list[str]:
    """What is wrong with one instance of a ``snowflake_grant_privileges_to_account_role``."""
    role = _role(body, "account_role_name", key, value)
    for flag in ("all_privileges", "with_grant_option", "on_account"):
        if str(_field(body, flag, key, value)).lower() not in ("false", "none"):
            return [f"{role} gets {flag}"]
    scopes = [s for s in ("on_account_object", "on_schema", "on_schema_object") if s in body]
    if len(scopes) != 1:
        raise Unclear(f"grant has scopes {scopes}, expected exactly one")
    privileges = _privileges(body, key, value)
    never = privileges & NEVER
    if never:
        return [f"{role} gets {sorted(never)}"]
    scope = scopes[0]
    block = _one(body[scope], scope)
    if scope == "on_account_object":
        object_type = str(_field(block, "object_type", key, value) or "").upper()
        allowed = ACCOUNT_OBJECTS.get(object_type, frozenset()) | ROLE_ACCOUNT_OBJECTS.get(
            (role, object_type), frozenset()
        )
        extra = privileges - allowed
        return [f"{role} gets {sorted(extra)} on a {object_type or '?'}"] if extra else []
    on_type: str | None = None
    if scope == "on_schema":
        if set(block) != {"schema_name"}:
            return [f"{role} gets {sorted(privileges)} on {sorted(set(block))} (not one schema)"]
        where, text = "schema", str(_field(block, "schema_name", key, value))
    elif {"all", "future"} & set(block):
        if len(block) != 1:
            raise Unclear(f"on_schema_object has {sorted(block)}")
        kind = next(iter(block))
        inner = _one(block[kind], kind)
        if set(inner) != {"object_type_plural", "in_schema"}:
            return [f"{role} gets {sorted(privileges)} on {kind} objects of a database"]
        where, text = "objects", str(_field(inner, "in_schema", key, value))
        on_type = str(_field(inner, "object_type_plural", key, value)).upper()
    elif set(block) == {"object_type", "object_name"}:
        where, text = "object", str(_field(block, "object_name", key, value))
        on_type = str(_field(block, "object_type", key, value)).upper()
    else:
        raise Unclear(f"on_schema_object has {sorted(block)}")
    problems = []
    if on_type is not None and on_type not in OBJECT_TYPES:
        problems.append(f"{role} gets {sorted(privileges)} on {on_type}")
    for layer in sorted(_layers(text)):
        extra = privileges - ALLOWED.get((role, layer), {}).get(where, frozenset())
        if extra:
            problems.append(f"{role} gets {sorted(extra)} on {layer} ({where})")
    changes = privileges & {"UPDATE", "DELETE", "TRUNCATE"}
    if role == "loader" and where == "object":
        table = re.findall(r"\w+", text)[-1].upper()
        if table not in APPEND_ONLY_EXEMPT:
            if changes:
                problems.append(f"loader gets {sorted(changes)} on append-only {table}")
            if "SELECT" in privileges:
                problems.append(f"loader reads {table}, a Bronze data table (personal data)")
    return problems


def _role_grant(body: dict[str, Any], key: str | None, value: Any) -> list[str]:
    """What is wrong with one instance of a ``snowflake_grant_account_role``."""
    role = _role(body, "role_name", key, value)
    if "parent_role_name" in body:
        parent = str(body["parent_role_name"])
        if "snowflake_account_role" in parent or parent != "${var.parent_role}":
            return [f"{role} is granted to role {parent} (only to var.parent_role)"]
        return []
    user = _index(_USER, str(body.get("user_name", "")), key, value)
    if user != role:
        return [f"{role} is granted to user {body.get('user_name')} (only to its own user)"]
    return []


def _grant_to_people(body: dict[str, Any]) -> list[str]:
    """What is wrong with a ``snowflake_grant_account_role`` over ``var.reporter_grantees``: it
    may grant the reporting role only, to each listed user (or role) by ``each.key``."""
    field = GRANTEES[str(body["for_each"])]
    role = _role(body, "role_name", None, None)
    if role != PEOPLE_ROLE:
        return [f"{role} is granted to var.reporter_grantees (only {PEOPLE_ROLE} is)"]
    others = {"user_name", "parent_role_name"} - {field}
    if body.get(field) != "${each.key}" or others & set(body):
        grantee = {name: body[name] for name in ("user_name", "parent_role_name") if name in body}
        return [f"{role} is granted to {grantee} (only to each of var.reporter_grantees)"]
    return []


def _sso_integration(body: dict[str, Any]) -> list[str]:
    """What is wrong with an external OAuth integration: sessions must be held to its allowed
    roles."""
    problems = []
    if body.get("external_oauth_allowed_roles_list") is None:
        problems.append("external OAuth sessions may use any role (no allowed roles list)")
    mode = str(body.get("external_oauth_any_role_mode", "")).upper()
    if mode != "DISABLE":
        problems.append(f"external_oauth_any_role_mode is {mode or 'unset'}, not DISABLE")
    return problems


def check_file(path: Path) -> list[str]:
    """Violations in one ``.tf`` file, each prefixed with the resource address."""
    parsed = load(path)
    locals_ = _locals(parsed)
    problems = []
    for kind, name, body in _resources(parsed):
        address = f"{path}: {kind}.{name}"
        if kind in KEEP_DATA:
            if not _prevents_destroy(body):
                problems.append(f"{address}: holds data but lacks lifecycle prevent_destroy = true")
            continue
        if kind == "snowflake_service_user":
            policy = str(body.get("network_policy", ""))
            if "snowflake_network_policy.this" not in policy:
                problems.append(f"{address}: service user without the network policy ({policy})")
            continue
        if kind == "snowflake_execute":
            sql = " ".join(str(body.get(field, "")) for field in ("execute", "revert", "query"))
            if statement := _grants_in_sql(sql):
                problems.append(f"{address}: runs {statement} in SQL")
            continue
        if kind == "snowflake_external_oauth_integration":
            problems += [f"{address}: {problem}" for problem in _sso_integration(body)]
            continue
        if kind not in (
            "snowflake_grant_privileges_to_account_role",
            "snowflake_grant_account_role",
        ):
            if kind.startswith("snowflake_grant") or "database_role" in kind:
                problems.append(f"{address}: {kind} is outside the role model")
            continue
        try:
            if kind == "snowflake_grant_account_role" and str(body.get("for_each")) in GRANTEES:
                problems += [f"{address}: {problem}" for problem in _grant_to_people(body)]
                continue
            for key, value in _instances(body, locals_):
                label = f"{address}[{key}]" if key is not None else address
                if kind == "snowflake_grant_account_role":
                    found = _role_grant(body, key, value)
                else:
                    found = _grant(body, key, value)
                problems += [f"{label}: {problem}" for problem in found]
        except Unclear as exc:
            problems.append(f"{address}: cannot be checked ({exc})")
    return problems


def _prevents_destroy(body: dict[str, Any]) -> bool:
    """Whether a resource sets ``prevent_destroy = true`` (a literal: Terraform allows no other)."""
    lifecycles = body.get("lifecycle", [])
    return any(block.get("prevent_destroy") is True for block in lifecycles)


def _grants_in_sql(sql: str) -> str:
    match = re.search(r"\b(grant|revoke)\b", sql, re.I)
    return match[1].upper() if match else ""


def violations(root: Path) -> list[str]:
    """Every violation of the role model, and every data resource without ``prevent_destroy``,
    in the configuration under ``root``."""
    problems = []
    for path in sorted(root.rglob("*.tf")):
        if ".terraform" not in path.parts:
            problems += check_file(path)
    return problems


def _target(body: dict[str, Any], key: str | None, value: Any) -> tuple[str, str]:
    """What one grant instance is on: (kind, where), e.g. ("WAREHOUSE", "${var.warehouses.x}"),
    ("schema", "gold"), ("future TABLES", "gold"), ("TABLE", "${var.bronze_schema}..."),
    ("ACCOUNT", "")."""
    if str(_field(body, "on_account", key, value)).lower() == "true":
        return "ACCOUNT", ""
    if "on_account_object" in body:
        block = _one(body["on_account_object"], "on_account_object")
        kind = str(_field(block, "object_type", key, value)).upper()
        return kind, str(_field(block, "object_name", key, value))
    if "on_schema" in body:
        block = _one(body["on_schema"], "on_schema")
        return "schema", ",".join(sorted(_layers(str(_field(block, "schema_name", key, value)))))
    block = _one(body.get("on_schema_object"), "on_schema_object")
    for kind in ("all", "future"):
        if kind in block:
            inner = _one(block[kind], kind)
            plural = str(_field(inner, "object_type_plural", key, value)).upper()
            where = str(_field(inner, "in_schema", key, value))  # in_database: Unclear
            return f"{kind} {plural}", ",".join(sorted(_layers(where)))
    kind = str(_field(block, "object_type", key, value)).upper()
    return kind, str(_field(block, "object_name", key, value))


def role_grants(root: Path, role: str) -> set[tuple[str, str, str]]:
    """Every privilege the pipeline role ``role`` holds in the configuration under ``root``, one
    (privilege, kind of object, which) each: ``("USAGE", "DATABASE", "${var.database}")``,
    ``("SELECT", "future VIEWS", "gold")``, ... (``all_privileges`` shows as ``ALL PRIVILEGES``).
    Raises Unclear on a grant it cannot resolve."""
    found = set()
    for path in sorted(root.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        parsed = load(path)
        locals_ = _locals(parsed)
        for kind, _, body in _resources(parsed):
            if kind != "snowflake_grant_privileges_to_account_role":
                continue
            for key, value in _instances(body, locals_):
                if _role(body, "account_role_name", key, value) != role:
                    continue
                if str(_field(body, "all_privileges", key, value)).lower() == "true":
                    privileges = frozenset({"ALL PRIVILEGES"})
                else:
                    privileges = _privileges(body, key, value)
                on, where = _target(body, key, value)
                found |= {(privilege, on, where) for privilege in privileges}
    return found


def _modules(parsed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: body for block in parsed.get("module", []) for name, body in block.items()}


def _calls(path: Path, module: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``path`` parsed, and its calls of the module whose source ends in ``module``."""
    parsed = load(path)
    calls = [
        body
        for body in _modules(parsed).values()
        if str(body.get("source", "")).rstrip("/").endswith(module)
    ]
    return parsed, calls


def _composition(path: Path, role_names: set[str]) -> list[str]:
    """The composition module feeds roles_and_grants each layer's own schema, made from its
    ``local.schemas`` (one a layer), the roles the environment names, and as the parent role
    (when it sets one) a literal that is none of ``role_names``."""
    parsed, calls = _calls(path, "roles_and_grants")
    if len(calls) != 1:
        return [f"{path}: expected one roles_and_grants module, found {len(calls)}"]
    call = calls[0]
    problems = []
    for variable, layer in LAYER_VARIABLES.items():
        expected = f'${{module.schema["{layer}"].fully_qualified_name}}'
        if call.get(variable) != expected:
            problems.append(f"{path}: {variable} = {call.get(variable)}, not {expected}")
    schemas = _locals(parsed).get("schemas")
    if _modules(parsed).get("schema", {}).get("for_each") != "${local.schemas}" or (
        not isinstance(schemas, dict) or set(schemas) != set(LAYER_VARIABLES.values())
    ):
        problems.append(f"{path}: module.schema is not made from local.schemas, one a layer")
    if call.get("roles") != "${var.roles}":
        problems.append(f"{path}: roles = {call.get('roles')}, not the environment's var.roles")
    parent = call.get("parent_role")
    if parent is not None and (str(parent).startswith("${") or str(parent).upper() in role_names):
        problems.append(f"{path}: parent_role {parent} is not a literal outside the pipeline")
    return problems


def _environment(environment: Path) -> tuple[list[str], set[str]]:
    """What is wrong with an environment, and its role names (upper case). It calls the
    composition module once, with three distinct literal role names (two pipeline roles sharing
    a name would be one role holding both's grants), none of them a system role."""
    path = environment / "main.tf"
    _, calls = _calls(path, COMPOSITION)
    if len(calls) != 1:
        return [f"{path}: expected one {COMPOSITION} module, found {len(calls)}"], set()
    roles = calls[0].get("roles")
    if not isinstance(roles, dict) or set(roles) != set(ROLES):
        return [f"{path}: roles {roles} are not a literal map with keys {ROLES}"], set()
    names = [str(name) for name in roles.values()]
    if any(name.startswith("${") for name in names):
        return [f"{path}: role names {names} are not all literals"], set()
    upper = {name.upper() for name in names}
    problems = []
    if len(upper) != len(ROLES):
        problems.append(f"{path}: two roles share a name ({roles})")
    if upper & SYSTEM_ROLES:
        problems.append(f"{path}: a pipeline role is a system role ({roles})")
    return problems, upper


def wiring(root: Path) -> list[str]:
    """What is wrong with how the configuration under ``root`` feeds the roles_and_grants
    module: in every environment, and in the composition module."""
    problems: list[str] = []
    role_names: set[str] = set()
    for environment in sorted((root / "environments").iterdir()):
        if environment.is_dir():
            found, names = _environment(environment)
            problems += found
            role_names |= names
    return problems + _composition(root / COMPOSITION / "main.tf", role_names)


_SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/|\{#.*?#\}", re.S)
_JINJA = re.compile(r"\{%.*?%\}|\{\{.*?\}\}", re.S)
_YAML_COLUMN = re.compile(r"^\s*-\s*name:\s*([\w\"']+)\s*$", re.M)
_TMDL_COLUMN = re.compile(r"^\s*column\s+'?([^'\n=]+?)'?\s*(?:=|$)", re.M)


def personal_columns(repo: Path) -> set[str]:
    """Names personal reference fields go by: the contract's field names and the names the
    Silver staging models give them (``name as customer_name``). Raises Unclear for a field the
    contract has that is neither personal nor known not to be."""
    from retail_pipeline.events.contract import REFERENCE_FIELDS

    names: set[str] = set()
    for entity, fields in REFERENCE_FIELDS.items():
        personal = PERSONAL_FIELDS.get(entity, frozenset())
        for spec in fields:
            if spec.name not in personal | NOT_PERSONAL_FIELDS.get(entity, frozenset()):
                raise Unclear(f"{entity}.{spec.name} is not classified as personal or not")
        staging = repo / "dbt" / "models" / "silver" / "staging" / f"stg_bronze__{entity}.sql"
        sql = _SQL_COMMENT.sub(" ", staging.read_text()) if staging.is_file() else ""
        for field in personal:
            names.add(field)
            names.update(re.findall(rf"\b{field}\s+as\s+(\w+)", sql, re.I))
    return {name.lower() for name in names}


def personal_data_in_reporting(repo: Path) -> list[str]:
    """Where a personal column reaches what the reporting role reads: a Gold model's SQL (any
    mention of the column outside comments and Jinja: a select, an alias's source, a join), a
    Gold YAML's columns (the enforced contracts: what the tables hold), a Power BI table's
    columns. (A `select *` of a Silver table holding them is caught by the contracts, and by
    tests/transform/test_personal_data.py, which looks for the values in a built Gold.)"""
    try:
        personal = personal_columns(repo)
    except Unclear as exc:
        return [f"personal data cannot be checked ({exc})"]
    problems = []
    gold = repo / "dbt" / "models" / "gold"
    for path in sorted(gold.rglob("*.sql")):
        sql = _JINJA.sub(" ", _SQL_COMMENT.sub(" ", path.read_text()))
        words = {w.lower() for w in re.findall(r"\w+", sql)}
        for column in sorted(words & personal):
            problems.append(f"{path}: Gold model reads personal column {column}")
    for path in sorted([*gold.rglob("*.yml"), *gold.rglob("*.yaml")]):
        columns = {c.strip("\"'").lower() for c in _YAML_COLUMN.findall(path.read_text())}
        for column in sorted(columns & personal):
            problems.append(f"{path}: Gold documents personal column {column}")
    for path in sorted((repo / "powerbi").rglob("*.tmdl")):
        columns = {c.strip().lower() for c in _TMDL_COLUMN.findall(path.read_text())}
        for column in sorted(columns & personal):
            problems.append(f"{path}: Power BI model has personal column {column}")
    return problems
