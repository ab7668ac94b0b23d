"""The Power BI project: generated from dbt's Gold models, and structurally sound.

No TMDL or PBIR validator installs here, so powerbi_check checks the structure the project
relies on; these tests show it catches each kind of mistake.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from retail_pipeline.dashboard.powerbi import NAME, measures, project_files
from retail_pipeline.dashboard.powerbi_check import check_project
from retail_pipeline.transform import project_dir
from tests.terraform.policy import personal_columns, personal_data_in_reporting

ROOT = Path(__file__).resolve().parents[2]
POWERBI = ROOT / "powerbi"
MODEL = f"{NAME}.SemanticModel/definition"
REPORT = f"{NAME}.Report/definition"


def test_the_committed_project_is_what_gold_generates() -> None:
    expected = project_files(project_dir())
    committed = {
        path.relative_to(POWERBI).as_posix(): path.read_text()
        for path in POWERBI.rglob("*")
        if path.is_file() and ".pbi" not in path.parts
    }
    assert committed.keys() == expected.keys(), "run `make powerbi`"
    for name, text in expected.items():
        assert committed[name] == text, f"{name} differs: run `make powerbi`"


def test_the_committed_project_passes_the_structural_check() -> None:
    assert check_project(POWERBI, project_dir()) == []


def test_the_model_holds_no_personal_data() -> None:
    """Power BI runs with the reporting role and reads Gold: no customer name or e-mail, in the
    generated model or the committed one (tests/terraform/policy.py names the columns)."""
    personal = personal_columns(ROOT)
    assert {"customer_name", "email"} <= personal
    for name, text in project_files(project_dir()).items():
        if name.endswith(".tmdl"):
            columns = set(re.findall(r"^\s*column\s+'?(\w+)", text, re.M))
            assert not columns & personal, name
    assert personal_data_in_reporting(ROOT) == []


def test_every_answer_has_its_measures() -> None:
    names = {measure.name for measure in measures(project_dir())}
    for wanted in (
        "Orders",
        "Gross Revenue",
        "Refunds",
        "Net Revenue",
        "Conversion Rate",
        "Product Revenue",
        "Canceled Rate",
        "Refunded Rate",
        "Canceled or Refunded Rate",
        "Created to Shipped P50 Hours",
        "Shipped to Delivered P90 Hours",
        "Created to Delivered Mean Hours",
        "Restatements",
    ):
        assert wanted in names
    pages = json.loads((POWERBI / REPORT / "pages" / "pages.json").read_text())["pageOrder"]
    assert len(pages) == 7  # one page per question, and the restatements
    assert pages[-1] == "restatements"


def test_the_restatements_table_lists_only_restatements() -> None:
    """Power BI leaves out a table row whose measures are all blank: the Restatements
    measure (blank where no row has is_restatement) keeps first publications out."""
    visual = json.loads(
        (
            POWERBI / REPORT / "pages" / "restatements" / "visuals" / "restatements_table"
            / "visual.json"
        ).read_text()
    )  # fmt: skip
    shown = [
        next(iter(p["field"])) + ":" + p["nativeQueryRef"]
        for p in visual["visual"]["query"]["queryState"]["Values"]["projections"]
    ]
    assert shown == [
        "Column:recorded_at", "Column:figure", "Column:figure_key", "Column:previous_value",
        "Column:figure_value", "Column:delta", "Column:cause_loads", "Measure:Restatements",
    ]  # fmt: skip
    measure = (POWERBI / MODEL / "tables" / "figure_ledger.tmdl").read_text()
    assert (
        "measure Restatements = CALCULATE(COUNTROWS(figure_ledger),"
        " figure_ledger[is_restatement] = TRUE())"
    ) in measure


def _replace(path: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        target = root / path
        text = target.read_text()
        assert old in text, (path, old)
        target.write_text(text.replace(old, new, 1))

    return edit


PLANTED = {
    "column renamed": (
        _replace(f"{MODEL}/tables/fct_orders.tmdl", "column order_status", "column status"),
        "fct_orders[status]: no such column in Gold",
    ),
    "wrong data type": (
        _replace(
            f"{MODEL}/tables/dim_date.tmdl",
            "column calendar_year\n\t\tdataType: int64",
            "column calendar_year\n\t\tdataType: string",
        ),
        "dim_date[calendar_year]: dataType string but Gold's integer is int64",
    ),
    "spaces for tabs": (
        _replace(f"{MODEL}/tables/dim_carriers.tmdl", "\tcolumn carrier", "    column carrier"),
        "indented with spaces",
    ),
    "unknown keyword": (
        _replace(f"{MODEL}/tables/dim_carriers.tmdl", "\tcolumn carrier", "\tcolum carrier"),
        "unexpected 'colum' in table dim_carriers",
    ),
    "bad enumeration": (
        _replace(f"{MODEL}/tables/fct_payments.tmdl", "mode: directQuery", "mode: direct"),
        "mode: 'direct' is not one of",
    ),
    "DAX column": (
        _replace(
            f"{MODEL}/tables/fct_payments.tmdl",
            "SUM(fct_payments[amount])",
            "SUM(fct_payments[amt])",
        ),
        "fct_payments[amt] does not resolve",
    ),
    "DAX measure": (
        _replace(
            f"{MODEL}/tables/fct_payments.tmdl",
            "[Gross Revenue] - [Refunds]",
            "[Gross] - [Refunds]",
        ),
        "[Gross] is not a measure",
    ),
    "DAX restated": (
        _replace(
            f"{MODEL}/tables/fct_orders.tmdl",
            "CALCULATE(COUNTROWS(fct_orders), fct_orders[is_converted] = TRUE())",
            "COUNTROWS(FILTER(fct_orders, fct_orders[is_converted]))",
        ),
        "measure [Orders Converted] = COUNTROWS(FILTER(fct_orders, fct_orders[is_converted]))"
        " restates its metric",
    ),
    "measure no metric states": (
        _replace(
            f"{MODEL}/tables/fct_orders.tmdl",
            "measure 'Orders Canceled' =",
            "measure 'Orders Cancelled' =",
        ),
        "measure [Orders Cancelled]: no metric of dbt's semantic layer has that label",
    ),
    "relationship": (
        _replace(
            f"{MODEL}/relationships.tmdl", "toColumn: dim_date.date_day", "toColumn: dim_date.day"
        ),
        "toColumn dim_date.day does not resolve",
    ),
    "table not referenced": (
        _replace(f"{MODEL}/model.tmdl", "ref table dim_carriers\n", ""),
        "model.tmdl and tables/ disagree on table 'dim_carriers'",
    ),
    "report measure": (
        _replace(
            f"{REPORT}/pages/revenue/visuals/revenue_card2/visual.json",
            '"Property": "Net Revenue"',
            '"Property": "Net"',
        ),
        "measure fct_payments[Net] is not in the model",
    ),
    "visual without a position": (
        _replace(
            f"{REPORT}/pages/orders_per_day/visuals/orders_line/visual.json",
            '"position"',
            '"place"',
        ),
        "'position' is a required property",
    ),
    "page display option": (
        _replace(f"{REPORT}/pages/conversion/page.json", '"FitToPage"', '"Fit"'),
        "'Fit' is not one of",
    ),
    "page order": (
        _replace(f"{REPORT}/pages/pages.json", '"lead_times"', '"lead"'),
        "does not list the pages",
    ),
}


@pytest.mark.parametrize("mistake", sorted(PLANTED))
def test_the_check_catches(mistake: str, tmp_path: Path) -> None:
    edit, message = PLANTED[mistake]
    copy = tmp_path / "powerbi"
    shutil.copytree(POWERBI, copy)
    edit(copy)
    problems = check_project(copy, project_dir())
    assert any(message in line for line in problems), problems


def test_the_check_catches_a_new_gold_column(tmp_path: Path) -> None:
    dbt = tmp_path / "dbt"
    shutil.copytree(project_dir() / "models" / "gold", dbt / "models" / "gold")
    yml = dbt / "models" / "gold" / "dimensions" / "_dimensions__models.yml"
    yml.write_text(
        yml.read_text().replace(
            "      - name: carrier\n",
            "      - name: carrier_name\n        data_type: varchar\n      - name: carrier\n",
        )
    )
    problems = check_project(POWERBI, dbt)
    assert "dim_carriers[carrier_name]: Gold column missing from the model" in problems


def test_a_metric_added_to_the_semantic_layer_needs_its_measure(tmp_path: Path) -> None:
    dbt = tmp_path / "dbt"
    shutil.copytree(project_dir() / "models" / "gold", dbt / "models" / "gold")
    metrics = dbt / "models" / "gold" / "semantic" / "_metrics.yml"
    metrics.write_text(
        metrics.read_text()
        + """
  - name: captured_orders_value
    label: Captured Orders Value
    type: simple
    type_params:
      measure: payment_amount
    filter:
      - "{{ Dimension('payment__movement_type') }} = 'capture'"
    config:
      meta: {unit: money}
"""
    )
    problems = check_project(POWERBI, dbt)
    assert "metric 'Captured Orders Value' of dbt's semantic layer has no measure" in problems
    generated = project_files(dbt)[f"{MODEL}/tables/fct_payments.tmdl"]
    assert (
        "measure 'Captured Orders Value' = ROUND(CALCULATE(SUM(fct_payments[amount]),"
        ' fct_payments[movement_type] = "capture"), 2)'
    ) in generated
