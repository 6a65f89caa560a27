"""The FHIR client edge (statuses, paging caps, loops) and prefetch template filling."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cds_service.errors import (
    FhirAuthError,
    FhirBadResponse,
    FhirNotFound,
    FhirServerError,
    FhirUnreachable,
    PrerequisiteFailed,
)
from cds_service.fhir.client import FhirClient
from cds_service.fhir.prefetch import TemplateError, render_template, resolve_prefetch
from tests.support.fhir_peer import FhirPeer, running_peer


@pytest.fixture
def peer() -> Iterator[FhirPeer]:
    with running_peer() as p:
        yield p


@pytest.fixture
def client() -> Iterator[FhirClient]:
    c = FhirClient(timeout_seconds=2, page_cap=3, max_entries=50)
    yield c
    c.close()


def test_render_template_fills_context_and_user_tokens() -> None:
    context = {"patientId": "123", "userId": "Practitioner/abc"}
    assert render_template("Patient/{{context.patientId}}", context) == "Patient/123"
    assert render_template("Practitioner/{{userPractitionerId}}", context) == "Practitioner/abc"


@pytest.mark.parametrize(
    ("template", "context"),
    [
        ("Patient/{{context.patient.id}}", {"patient": {"id": "1"}}),  # nested path
        ("Patient/{{context.patientId}}", {}),  # absent
        ("Patient/{{context.patientId}}", {"patientId": "1&_include=*"}),  # query injection
        ("Patient/{{Patient.id}}", {"patientId": "1"}),  # FHIRPath-like token
        ("PractitionerRole/{{userPractitionerRoleId}}", {"userId": "Practitioner/1"}),  # user of another type
    ],
)
def test_render_template_refuses_what_the_spec_does_not_allow(template: str, context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError):
        render_template(template, context)


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (401, FhirAuthError),
        (403, FhirAuthError),
        (404, FhirNotFound),
        (500, FhirServerError),
        (400, FhirBadResponse),
    ],
)
def test_statuses_become_typed_exceptions(
    peer: FhirPeer, client: FhirClient, status: int, exception: type[Exception]
) -> None:
    peer.overrides["/Patient"] = lambda path, query: (status, {"resourceType": "OperationOutcome"})
    with pytest.raises(exception):
        client.read(peer.base_url, "Patient/1", "t")


def test_connection_refused_is_unreachable(client: FhirClient) -> None:
    with pytest.raises(FhirUnreachable):
        client.read("http://127.0.0.1:9/fhir", "Patient/1", None)


def test_non_json_answer_is_a_bad_response(peer: FhirPeer, client: FhirClient) -> None:
    peer.overrides["/Patient"] = lambda path, query: (200, b"<html>not fhir</html>")
    with pytest.raises(FhirBadResponse):
        client.read(peer.base_url, "Patient/1", None)


def _page(url: str, n: int, next_url: str | None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Observation", "id": f"{url}-{i}"}} for i in range(n)],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def test_search_follows_next_links_until_the_page_cap(peer: FhirPeer, client: FhirClient) -> None:
    def pages(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        page = int(query.get("page", ["0"])[0])
        return 200, _page(f"p{page}", 2, f"{peer.base_url}/Observation?page={page + 1}")

    peer.overrides["/Observation"] = pages
    result = client.search(peer.base_url, "Observation?patient=1", None)
    assert result.pages == 3  # the cap
    assert len(result.resources) == 6
    assert result.truncated is not None
    assert "page cap" in result.truncated


def test_a_next_link_that_loops_is_stopped(peer: FhirPeer, client: FhirClient) -> None:
    peer.overrides["/Observation"] = lambda path, query: (
        200,
        _page("loop", 1, f"{peer.base_url}/Observation?x=1"),
    )
    result = client.search(peer.base_url, "Observation?x=1", None)
    assert result.truncated == "next link loops; stopped"
    assert result.pages == 1


def test_a_next_link_to_another_host_is_not_followed(peer: FhirPeer, client: FhirClient) -> None:
    peer.overrides["/Observation"] = lambda path, query: (200, _page("a", 1, "http://169.254.169.254/latest"))
    result = client.search(peer.base_url, "Observation", "secret")
    assert result.truncated == "next link leaves the FHIR server's base; not followed"
    assert len(peer.requests) == 1


def test_the_entry_cap_bounds_a_huge_bundle(peer: FhirPeer, client: FhirClient) -> None:
    peer.overrides["/Observation"] = lambda path, query: (200, _page("big", 10000, None))
    result = client.search(peer.base_url, "Observation", None)
    assert len(result.resources) == 50
    assert result.truncated is not None
    assert "entry cap" in result.truncated


def test_patient_null_in_prefetch_is_412(client: FhirClient) -> None:
    with pytest.raises(PrerequisiteFailed):
        resolve_prefetch(
            {"patient": "Patient/{{context.patientId}}"},
            {"patientId": "1"},
            {"patient": None},
            client=client,
            fhir_server=None,
            access_token=None,
        )
