"""Data flows one way (issue 13, defect 1): each hook call computes its recommendations exactly once.

The count is taken with a profiler hook on the calls of any function named ``recommend`` defined under
``cds_service/engine/recommend``, so it does not depend on where the pipeline or the engine import it from.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.functional.conftest import load_example

RECOMMEND_SOURCE = str(Path("cds_service", "engine", "recommend"))


@contextmanager
def counting_recommend_calls() -> Iterator[list[int]]:
    """Count calls of ``recommend`` (engine code) made on this thread while the block runs."""
    calls = [0]

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        code = frame.f_code
        if event == "call" and code.co_name == "recommend" and RECOMMEND_SOURCE in code.co_filename:
            calls[0] += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield calls
    finally:
        sys.setprofile(previous)


@pytest.mark.parametrize(
    ("service", "example"),
    [
        ("mg-patient-view", "patient-view-request.json"),
        ("mg-order-select", "order-select-request.json"),
        ("mg-order-sign", "order-sign-request.json"),
    ],
)
def test_recommend_runs_once_per_hook_call(client: FlaskClient, service: str, example: str) -> None:
    request = load_example(example)
    with counting_recommend_calls() as calls:
        response = client.post(f"/cds-services/{service}", json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["cards"], "the example must give cards, or the count proves little"
    assert calls[0] == 1
