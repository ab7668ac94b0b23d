"""Every JSON file of the Power BI project against Microsoft's published JSON schemas, offline.

powerbi_check judges the files by a subset written in the project; here Microsoft's own schemas
(microsoft/json-schemas, MIT, vendored in ``powerbi_schemas/``: see its SOURCE.md) judge them
whole, so a property Power BI Desktop or Fabric would refuse fails in CI. The registry never
fetches: a ``$schema`` or ``$ref`` URL without a vendored file is a failure naming that URL.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable
from referencing.jsonschema import DRAFT7

from retail_pipeline.dashboard.powerbi import ITEM_TYPES, NAME, write_project
from retail_pipeline.dashboard.powerbi_check import check_project
from retail_pipeline.transform import project_dir

ROOT = Path(__file__).resolve().parents[2]
POWERBI = ROOT / "powerbi"
SCHEMAS = Path(__file__).parent / "powerbi_schemas"
PREFIX = "https://developer.microsoft.com/json-schemas/"
REPORT = f"{NAME}.Report/definition"
FAMILIES = {
    ".pbip": "fabric/pbip/pbipProperties/",
    ".platform": "fabric/gitIntegration/platformProperties/",
    "definition.pbir": "fabric/item/report/definitionProperties/",
    "definition.pbism": "fabric/item/semanticModel/definitionProperties/",
    "version.json": "fabric/item/report/definition/versionMetadata/",
    "report.json": "fabric/item/report/definition/report/",
    "pages.json": "fabric/item/report/definition/pagesMetadata/",
    "page.json": "fabric/item/report/definition/page/",
    "visual.json": "fabric/item/report/definition/visualContainer/",
}
"""The schema each JSON file of Microsoft's format names, by file name (or suffix, ``.pbip``)."""
NOT_JSON = {".tmdl", ".gitignore"}
"""The project's other files (by suffix or name): TMDL text and the ignore list."""


def _refuse_network(uri: str) -> Resource:
    """The registry's retrieve function: nothing outside ``powerbi_schemas/`` is fetched."""
    raise NoSuchResource(ref=uri)


def _registry() -> Registry:
    """Every vendored schema under its ``$schema`` URL (its path) and, by crawling, its
    ``$id`` (some of Microsoft's ``schema-embedded.json`` files say ``schema.embedded.json``)."""
    resources = [
        (
            PREFIX + path.relative_to(SCHEMAS).as_posix(),
            Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT7),
        )
        for path in sorted(SCHEMAS.rglob("*.json"))
    ]
    return Registry(retrieve=_refuse_network).with_resources(resources).crawl()


REGISTRY = _registry()


def _not_vendored(error: BaseException) -> str:
    """The absolute URL a failed ``$ref`` asked for (referencing keeps it down the chain)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, NoSuchResource):
            return str(cause.ref)
        cause = cause.__cause__ or cause.__context__
    return str(error)


def violations(data: object, schema: dict[str, Any]) -> list[str]:
    """``<JSON path>: <message>`` for each way ``data`` breaks ``schema``."""
    validator = jsonschema.validators.validator_for(schema)(schema, registry=REGISTRY)
    try:
        errors = sorted(validator.iter_errors(data), key=lambda error: error.json_path)
    except Unresolvable as error:
        return [f"$: no vendored schema for {_not_vendored(error)}"]
    return [f"{error.json_path}: {error.message}" for error in errors]


def schema_problems(root: Path) -> list[str]:
    """``<file>: <JSON path>: <message>`` for every file of the project under ``root`` that
    lacks its ``$schema`` or breaks it (and for any file of no known format)."""
    problems: list[str] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if not path.is_file() or ".pbi" in path.relative_to(root).parts:
            continue
        kind = path.name if path.name in FAMILIES else path.suffix
        if kind not in FAMILIES:
            if kind not in NOT_JSON and path.name not in NOT_JSON:
                problems.append(f"{relative}: not a file of Microsoft's PBIP format")
            continue
        data = json.loads(path.read_text())
        url = data.get("$schema")
        if not isinstance(url, str):
            problems.append(f"{relative}: $: no $schema (Microsoft's format names one)")
            continue
        if not url.startswith(PREFIX + FAMILIES[kind]):
            problems.append(f"{relative}: $.$schema: {url} is not a {FAMILIES[kind]} schema")
            continue
        try:
            schema = REGISTRY.contents(url)
        except NoSuchResource:
            problems.append(f"{relative}: $.$schema: no vendored schema for {url}")
            continue
        found = violations(data, schema)
        if kind == ".platform":
            # Microsoft's schema allows any string; Fabric needs the folder's item type.
            item_type = {"const": path.parent.name.removeprefix(f"{NAME}.")}
            found += violations(
                data, {"properties": {"metadata": {"properties": {"type": item_type}}}}
            )
        problems += [f"{relative}: {line}" for line in found]
    return problems


def test_the_generated_project_follows_microsofts_schemas(tmp_path: Path) -> None:
    write_project(tmp_path / "powerbi", project_dir())
    assert schema_problems(tmp_path / "powerbi") == []


def test_the_committed_project_follows_microsofts_schemas() -> None:
    assert schema_problems(POWERBI) == []


def test_every_kind_of_file_is_checked() -> None:
    """Each file kind that names a schema is in the project, and each item has ``.platform``."""
    names = {path.name for path in POWERBI.rglob("*") if path.is_file()}
    assert {kind for kind in FAMILIES if not kind.startswith(".")} <= names
    assert f"{NAME}.pbip" in names
    for item_type in ITEM_TYPES:
        assert (POWERBI / f"{NAME}.{item_type}" / ".platform").is_file(), item_type


def test_a_ref_without_a_vendored_schema_names_its_url() -> None:
    schema = {"$ref": f"{PREFIX}fabric/item/report/definition/page/9.9.9/schema.json"}
    assert violations({}, schema) == [f"$: no vendored schema for {schema['$ref']}"]


def _set(path: str, change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """An edit of the JSON file at ``path`` (under the project's root)."""

    def edit(root: Path) -> None:
        data = json.loads((root / path).read_text())
        change(data)
        (root / path).write_text(json.dumps(data, indent=2) + "\n")

    return edit


def _rename_key(node: dict[str, Any], old: str, new: str) -> None:
    node[new] = node.pop(old)


def _first_projection(visual: dict[str, Any]) -> dict[str, Any]:
    projection: dict[str, Any] = visual["visual"]["query"]["queryState"]["Values"]["projections"][0]
    return projection


CARD = f"{REPORT}/pages/revenue/visuals/revenue_card0/visual.json"
LINE = f"{REPORT}/pages/revenue/visuals/revenue_line/visual.json"
PAGE = f"{REPORT}/pages/revenue/page.json"
REPORT_JSON = f"{REPORT}/report.json"
PLANTED: dict[str, tuple[Callable[[Path], None], str]] = {
    "misspelt property": (
        _set(PAGE, lambda page: _rename_key(page, "displayName", "dispalyName")),
        f"{PAGE}: $: Additional properties are not allowed ('dispalyName' was unexpected)",
    ),
    "wrong type": (
        _set(LINE, lambda visual: visual["position"].update(height="552")),
        f"{LINE}: $.position.height: '552' is not of type 'number'",
    ),
    "missing required property": (
        _set(f"{NAME}.Report/definition.pbir", lambda pbir: pbir.pop("datasetReference")),
        f"{NAME}.Report/definition.pbir: $: 'datasetReference' is a required property",
    ),
    "unknown $schema version": (
        _set(
            REPORT_JSON,
            lambda report: report.update({"$schema": report["$schema"].replace("3.0.0", "9.0.0")}),
        ),
        f"{REPORT_JSON}: $.$schema: no vendored schema for"
        f" {PREFIX}fabric/item/report/definition/report/9.0.0/schema.json",
    ),
    "visual with an unknown field": (
        _set(
            CARD,
            lambda visual: _rename_key(_first_projection(visual)["field"], "Measure", "Metric"),
        ),
        f"{CARD}: $.visual.query.queryState.Values.projections[0].field: Additional properties"
        " are not allowed ('Metric' was unexpected)",
    ),
    ".platform with a wrong type": (
        _set(
            f"{NAME}.Report/.platform",
            lambda platform: platform["metadata"].update(type="Dashboard"),
        ),
        f"{NAME}.Report/.platform: $.metadata.type: 'Report' was expected",
    ),
}


@pytest.mark.parametrize("mistake", sorted(PLANTED))
def test_microsofts_schema_catches(mistake: str, tmp_path: Path) -> None:
    edit, message = PLANTED[mistake]
    write_project(tmp_path / "powerbi", project_dir())
    edit(tmp_path / "powerbi")
    assert message in schema_problems(tmp_path / "powerbi")


def test_the_structural_check_catches_a_wrong_platform_type(tmp_path: Path) -> None:
    copy = tmp_path / "powerbi"
    shutil.copytree(POWERBI, copy)
    PLANTED[".platform with a wrong type"][0](copy)
    assert check_project(copy, project_dir()) == [
        f"{NAME}.Report/.platform: metadata.type is 'Dashboard', not 'Report'"
    ]


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [
            ref
            for key, value in node.items()
            for ref in ([value] if key == "$ref" and isinstance(value, str) else _refs(value))
        ]
    return [ref for value in node for ref in _refs(value)] if isinstance(node, list) else []


def test_only_the_schemas_the_project_needs_are_vendored() -> None:
    """The vendored files are the project's ``$schema`` URLs and what they ``$ref``, no more,
    and SOURCE.md lists each (so an old version is dropped when the generator moves on)."""
    wanted = {
        json.loads(path.read_text())["$schema"]
        for path in POWERBI.rglob("*")
        if path.is_file() and (path.name in FAMILIES or path.suffix in FAMILIES)
    }
    reached: set[str] = set()
    while wanted - reached:
        url = min(wanted - reached)
        reached.add(url)
        schema = json.loads((SCHEMAS / url.removeprefix(PREFIX)).read_text())
        wanted |= {urldefrag(urljoin(url, ref)).url for ref in _refs(schema)} - {url}
    vendored = {PREFIX + path.relative_to(SCHEMAS).as_posix() for path in SCHEMAS.rglob("*.json")}
    assert vendored == reached
    listed = (SCHEMAS / "SOURCE.md").read_text()
    assert [url for url in sorted(reached) if f"`{url.removeprefix(PREFIX)}`" not in listed] == []
