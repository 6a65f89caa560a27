"""The benchmark floor endpoint exists only when MGCDS_BENCH_FLOOR turns it on."""

from __future__ import annotations

from pathlib import Path

from cds_service import create_app
from cds_service.config import Settings


def test_floor_is_absent_by_default(tmp_path: Path) -> None:
    client = create_app(Settings(dev=True, instance_path=tmp_path)).test_client()
    assert client.post("/bench/floor", json={"hook": "patient-view"}).status_code == 404


def test_floor_parses_the_body_and_answers_a_fixed_card(tmp_path: Path) -> None:
    client = create_app(Settings(dev=True, instance_path=tmp_path, bench_floor=True)).test_client()
    response = client.post("/bench/floor", json={"hook": "patient-view", "prefetch": {}})
    assert response.status_code == 200
    assert [card["indicator"] for card in response.get_json()["cards"]] == ["info"]
    # Same body handling as the hook endpoints: invalid JSON is a 400, not a card.
    bad = client.post("/bench/floor", data=b"{not json", content_type="application/json")
    assert bad.status_code == 400
