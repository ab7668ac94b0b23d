"""dbt's accepted values that mirror the event contract are the contract's, so they cannot drift.

No dbt run needed: the YAML of the dbt project is read as it is.
"""

from __future__ import annotations

from typing import Any

import yaml

from retail_pipeline.events.contract import (
    CHANNELS,
    ISO_4217,
    REPORTING_CURRENCY,
    TOPIC_EVENT_TYPES,
    TOPICS,
    UNKNOWN_CHANNEL,
)
from retail_pipeline.transform import project_dir

# Staging model -> the contract topic it holds.
STAGING_TOPICS = {
    "stg_bronze__order_events": "orders",
    "stg_bronze__payment_events": "payments",
    "stg_bronze__shipment_events": "shipments",
}


def _accepted_values() -> dict[tuple[str, str], list[Any]]:
    """(model, column) -> the values of every accepted_values test in the dbt project."""
    found: dict[tuple[str, str], list[Any]] = {}
    for path in sorted((project_dir() / "models").rglob("*.yml")):
        document = yaml.safe_load(path.read_text()) or {}
        for model in document.get("models", []):
            for column in model.get("columns", []):
                for test in column.get("data_tests", []):
                    if isinstance(test, dict) and "accepted_values" in test:
                        spec = test["accepted_values"]
                        values = spec.get("arguments", spec)["values"]
                        found[(model["name"], column["name"])] = values
    return found


def _project() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((project_dir() / "dbt_project.yml").read_text())
    return document


def test_event_types_are_the_contracts() -> None:
    accepted = _accepted_values()
    for model, topic in STAGING_TOPICS.items():
        assert accepted[(model, "event_type")] == list(TOPIC_EVENT_TYPES[topic]), model


def test_topics_are_the_contracts() -> None:
    assert _accepted_values()[("quarantined_events", "topic")] == list(TOPICS)


def test_every_contract_mirror_is_checked() -> None:
    """A new accepted_values on a contract field (event_type, currency, topic) needs a check
    here; currencies in particular must not be listed in dbt at all (any ISO 4217 code is
    valid, the reporting currency is a var)."""
    mirrored = {
        key
        for key in _accepted_values()
        if key[1] in {"event_type", "currency", "topic", "event_version", "channel"}
    }
    assert mirrored == {
        *((model, "event_type") for model in STAGING_TOPICS),
        ("quarantined_events", "topic"),
        ("stg_bronze__order_events", "channel"),
        ("daily_orders_by_channel", "channel"),
    }


def test_channels_are_the_contracts_and_unknown_for_version_1() -> None:
    accepted = _accepted_values()
    expected = [*CHANNELS, UNKNOWN_CHANNEL]
    assert accepted[("stg_bronze__order_events", "channel")] == expected
    assert accepted[("daily_orders_by_channel", "channel")] == expected


def test_reporting_currency_is_the_contracts() -> None:
    variables = _project()["vars"]
    assert variables["reporting_currency"] == REPORTING_CURRENCY
    assert variables["reporting_currency"] in ISO_4217
    assert "accepted_currencies" not in variables


def test_failing_data_tests_keep_their_rows() -> None:
    """The runner's failure message points at the stored failing rows (see test_runner)."""
    config = _project()["data_tests"]["retail"]
    assert config["+store_failures"] is True
    assert config["+store_failures_as"] == "view"
