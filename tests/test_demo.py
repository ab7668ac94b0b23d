"""The README's first command: simulate, load, transform, answer; files or through Kafka."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from retail_pipeline.demo import run_demo


def assert_matches_truth(answers: dict[str, Any], truth_file: Path) -> None:
    truth = json.loads(truth_file.read_text())
    for key in ("orders_per_day", "revenue", "conversion_rate", "top_products", "cancel_refund"):
        assert answers[key] == truth[key], key  # money is rounded to cents on both sides
    for segment, stats in truth["lead_times_hours"].items():
        assert answers["lead_times_hours"][segment] == pytest.approx(stats, abs=1e-3)


def test_demo_from_files_gives_the_true_answers_and_reruns_identically(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"days": 3, "orders_per_day": 120, "seed": 5}
    first = run_demo(
        tmp_path / "demo", warehouse=tmp_path / "wh.duckdb", echo=lambda _: None, **kwargs
    )
    assert_matches_truth(first, tmp_path / "demo" / "sim" / "truth.json")
    again = run_demo(
        tmp_path / "demo", warehouse=tmp_path / "wh.duckdb", echo=lambda _: None, **kwargs
    )
    assert again == first


@pytest.mark.kafka
def test_demo_through_kafka_gives_the_true_answers(kafka_broker: str, tmp_path: Path) -> None:
    answers = run_demo(
        tmp_path / "demo",
        days=2,
        orders_per_day=100,
        seed=6,
        kafka=True,
        bootstrap=kafka_broker,
        warehouse=tmp_path / "wh.duckdb",
        echo=lambda _: None,
    )
    assert_matches_truth(answers, tmp_path / "demo" / "sim" / "truth.json")
