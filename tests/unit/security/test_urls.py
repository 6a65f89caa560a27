"""The egress URL grammar (issue 16 B2): a URL passes only when every server would read the same path from it.

Expected readings come from how servers route (docs/security.md, "Egress"): Tomcat and Jetty treat ``..;`` as ``..``
(path parameters), Spring and some proxies decode ``%2e``/``%2f`` before routing, IIS folds backslashes; a path is
"under" a base at a segment boundary only (``/fhir`` admits ``/fhir/x``, not ``/fhir2``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.errors import ConfigurationError
from cds_service.security.issuers import IssuerRegistry
from cds_service.security.urls import egress_url, normalise_url

BASE = normalise_url("https://ehr.example.org/fhir")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://ehr.example.org/fhir/..;/admin", "path parameters"),
        ("https://ehr.example.org/fhir;jsessionid=1/Patient/1", "path parameters"),
        ("https://ehr.example.org/fhir/Patient/1;x", "path parameters"),
        ("https://ehr.example.org/fhir/%2e%2e/admin", "encoded dot"),
        ("https://ehr.example.org/fhir/%2E%2E/admin", "encoded dot"),
        ("https://ehr.example.org/fhir/.%2e/admin", "encoded dot"),
        ("https://ehr.example.org/fhir%2f..%2fadmin", "encoded dot, slash"),
        ("https://ehr.example.org/fhir/%252e%252e/admin", "percent"),  # double encoding
        ("https://ehr.example.org/fhir/%5c..%5cadmin", "backslash"),
        ("https://ehr.example.org/fhir/%3b/admin", "semicolon"),
        ("https://ehr.example.org/fhir/%00/admin", "control"),
        ("https://ehr.example.org/fhir/%zz", "malformed"),
        ("https://ehr.example.org/fhir/../admin", "dot segments"),
        ("https://ehr.example.org/fhir/./Patient", "dot segments"),
        ("https://ehr.example.org/fhir/Patient/..", "dot segments"),
        ("https://ehr.example.org/fhir//admin", "empty segments"),
        ("https://ehr.example.org/fhir\\..\\admin", "backslash"),
        ("https://ehr.example.org/fhir/\uff0e\uff0e/admin", "non-ASCII"),  # fullwidth dots some servers fold
        ("https://ehr.example.org/fhir/Patient/1#frag", "fragment"),
        ("https://u:p@ehr.example.org/fhir/Patient/1", "credentials"),
        ("http://ehr.example.org/fhir/Patient/1", "not under"),
        ("https://ehr.example.org:444/fhir/Patient/1", "not under"),
        ("https://ehr.example.org/admin/x", "not under"),
        ("https://ehr.example.org/fhir2/Patient/1", "not under"),
        ("https://ehr.example.org/FHIR/Patient/1", "not under"),  # paths are case-sensitive
        ("https://evil.example.net/fhir/Patient/1", "not under"),
        ("https://ehr.example.org.evil.example.net/fhir/Patient/1", "not under"),
        ("gopher://ehr.example.org/fhir/Patient/1", "scheme"),
    ],
)
def test_an_egress_url_that_servers_could_read_elsewhere_is_refused(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        egress_url(url, BASE)


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr.example.org/fhir",
        "https://ehr.example.org/fhir/",
        "https://ehr.example.org/fhir?_getpages=abc&_getpagesoffset=20",  # HAPI's next links
        "https://ehr.example.org/fhir/Observation?patient=1&code=http://loinc.org|19123-9&_count=200",
        "https://EHR.example.org.:443/fhir/Patient/1",  # case, trailing dot and the default port are the same host
        "https://ehr.example.org/fhir/Medication/a..b",  # dots inside an id are no dot segment
        "https://ehr.example.org/fhir/%50atient/1",  # an escaped letter decodes to the same path
    ],
)
def test_urls_under_the_base_pass(url: str) -> None:
    assert egress_url(url, BASE).is_under(BASE)


def test_a_fhir_base_with_path_parameters_is_refused() -> None:
    """``/fhir/..;/admin`` passed the first allowlist (its segments after decoding were not dot segments)."""
    with pytest.raises(ValueError, match="path parameters"):
        normalise_url("https://ehr.example.org/fhir/..;/admin")


def _registry(tmp_path: Path, servers_a: list[Any], servers_b: list[Any] | None = None) -> IssuerRegistry:
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": []}))
    data: dict[str, Any] = {"https://a.example": {"jwks_file": "jwks.json", "fhir_servers": servers_a}}
    if servers_b is not None:
        data["https://b.example"] = {"jwks_file": "jwks.json", "fhir_servers": servers_b}
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps(data))
    return IssuerRegistry.load(path)


def test_a_registry_entry_the_egress_grammar_refuses_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="path parameters"):
        _registry(tmp_path, ["https://ehr.example.org/fhir;v=1"])


def test_issuers_disagreeing_on_allow_private_network_for_one_server_stop_the_start(tmp_path: Path) -> None:
    """Each outbound request is vetted from its URL alone, so the flag must not depend on who called."""
    with pytest.raises(ConfigurationError, match="allow_private_network"):
        _registry(
            tmp_path,
            [{"url": "https://fhir.internal/r4", "allow_private_network": True}],
            ["https://fhir.internal/other"],
        )
    agreeing = _registry(
        tmp_path,
        [{"url": "https://fhir.internal/r4", "allow_private_network": True}],
        [{"url": "https://fhir.internal/r4", "allow_private_network": True}],
    )
    assert agreeing.private_network_origins() == {("https", "fhir.internal", 443)}


def test_subjects_are_read_per_issuer(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": []}))
    registry = IssuerRegistry.from_mapping(
        {"https://a.example": {"jwks_file": "jwks.json", "subjects": ["client-1"]}}, base_dir=tmp_path
    )
    config = registry.get("https://a.example")
    assert config is not None
    assert config.subjects == ("client-1",)
    with pytest.raises(ConfigurationError, match="subjects"):
        IssuerRegistry.from_mapping(
            {"https://a.example": {"jwks_file": "jwks.json", "subjects": "c"}}, base_dir=tmp_path
        )
