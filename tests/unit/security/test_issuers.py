"""The trusted issuer registry (issue 6 item 2): loaded from JSON, validated at start-up with clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.errors import ConfigurationError
from cds_service.security.issuers import IssuerConfig, IssuerRegistry

ISSUE_EXAMPLE = {
    "https://ehr.example.org": {
        "jwks_url": "https://ehr.example.org/.well-known/jwks.json",
        "jku_allowlist": ["https://ehr.example.org/jwks"],
        "tenants": ["t1"],
        "fhir_servers": ["https://ehr.example.org/fhir"],
    }
}


def test_the_issues_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps(ISSUE_EXAMPLE), encoding="utf-8")
    registry = IssuerRegistry.load(path)
    assert registry.get("https://ehr.example.org") == IssuerConfig(
        issuer="https://ehr.example.org",
        jwks_url="https://ehr.example.org/.well-known/jwks.json",
        jwks_file=None,
        jku_allowlist=("https://ehr.example.org/jwks",),
        tenants=("t1",),
        fhir_servers=("https://ehr.example.org/fhir",),
    )
    assert registry.get("https://ehr.example.org/") is None
    assert registry.get("https://unknown.example.org") is None


def test_jwks_file_is_relative_to_the_registry(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "ehr.json").write_text('{"keys": []}', encoding="utf-8")
    path = tmp_path / "issuers.json"
    path.write_text(json.dumps({"https://ehr.example.org": {"jwks_file": "keys/ehr.json"}}), encoding="utf-8")
    config = IssuerRegistry.load(path).get("https://ehr.example.org")
    assert config is not None
    assert config.jwks_file == tmp_path / "keys" / "ehr.json"


def test_private_network_servers_are_marked() -> None:
    registry = IssuerRegistry.from_mapping(
        {
            "https://ehr.example.org": {
                "jwks_url": "https://ehr.example.org/jwks",
                "fhir_servers": [
                    "https://a.example.org/fhir",
                    {"url": "https://b.internal/fhir", "allow_private_network": True},
                ],
            }
        }
    )
    config = registry.get("https://ehr.example.org")
    assert config is not None
    assert config.fhir_servers == ("https://a.example.org/fhir", "https://b.internal/fhir")
    assert config.private_network_fhir_servers == ("https://b.internal/fhir",)


def test_loopback_http_key_urls_are_allowed() -> None:
    IssuerRegistry.from_mapping({"https://ehr.example.org": {"jwks_url": "http://127.0.0.1:9999/jwks"}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "empty"),
        ([], "JSON object"),
        ({"https://e.example": "x"}, "JSON object"),
        ({"": {"jwks_url": "https://e.example/k"}}, "non-empty"),
        ({"https://e.example": {"jwks_uri": "https://e.example/k"}}, "unknown keys ['jwks_uri']"),
        ({"https://e.example": {}}, "no key source"),
        ({"https://e.example": {"jwks_url": "http://e.example/k"}}, "https"),
        ({"https://e.example": {"jwks_url": "ftp://e.example/k"}}, "not an absolute http(s) URL"),
        ({"https://e.example": {"jwks_url": "https://u:p@e.example/k"}}, "credentials"),
        ({"https://e.example": {"jku_allowlist": "https://e.example/k"}}, "list of non-empty strings"),
        ({"https://e.example": {"jku_allowlist": ["http://evil.example/k"]}}, "https"),
        ({"https://e.example": {"jwks_url": "https://e.example/k", "tenants": [1]}}, "'tenants'"),
        (
            {"https://e.example": {"jwks_url": "https://e.example/k", "fhir_servers": ["file:///etc"]}},
            "fhir_servers",
        ),
        (
            {
                "https://e.example": {
                    "jwks_url": "https://e.example/k",
                    "fhir_servers": ["https://e.example/f?x=1"],
                }
            },
            "query",
        ),
        (
            {
                "https://e.example": {
                    "jwks_url": "https://e.example/k",
                    "fhir_servers": [{"url": "https://e.example/f", "x": 1}],
                }
            },
            "unknown keys",
        ),
        (
            {
                "https://e.example": {
                    "jwks_url": "https://e.example/k",
                    "fhir_servers": [{"url": "https://e.example/f", "allow_private_network": "yes"}],
                }
            },
            "true or false",
        ),
        ({"https://e.example": {"jwks_file": "/nonexistent/jwks.json"}}, "does not exist"),
    ],
)
def test_invalid_registries_are_refused_with_a_clear_message(data: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        IssuerRegistry.from_mapping(data)
    assert message in str(caught.value)


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        IssuerRegistry.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        IssuerRegistry.load(bad)
