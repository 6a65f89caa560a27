"""docker-compose.yml and the Dockerfile, validated by parsing (no Docker engine here): services, ports,
environment, healthchecks, the non-root user and the `mgcds serve` command.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import fields
from typing import Any

import pytest
import yaml

from cds_service.config import PREFIX, Settings
from tests.conftest import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
PINNED_TAG = re.compile(r"^[\w./-]+:v?\d+(\.\d+)+[\w.-]*$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The parsed compose file."""
    parsed: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return parsed


@pytest.fixture(scope="module")
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    instructions = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def test_the_four_services_exist(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"mgcds", "hapi", "postgres", "loader"}


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name in ("hapi", "postgres", "loader"):
        image = compose["services"][name]["image"]
        assert PINNED_TAG.match(image), f"{name}: {image} is not pinned to a version"
    assert compose["services"]["hapi"]["image"].startswith("hapiproject/hapi:")


def test_ports(compose: dict[str, Any]) -> None:
    assert compose["services"]["mgcds"]["ports"] == ["8080:8080"]
    assert compose["services"]["hapi"]["ports"] == ["8081:8080"]
    # The audit database is reachable from the service only.
    assert "ports" not in compose["services"]["postgres"]


def test_service_environment_names_real_settings(compose: dict[str, Any]) -> None:
    environment = compose["services"]["mgcds"]["environment"]
    known = {f"{PREFIX}{f.name.upper()}" for f in fields(Settings)}
    assert set(environment) <= known, set(environment) - known
    assert environment["MGCDS_AUDIT_URL"] == "postgresql://mgcds:mgcds@postgres:5432/mgcds"
    assert environment["MGCDS_PORT"] == "8080"
    assert environment["MGCDS_HOST"] == "0.0.0.0"  # noqa: S104 - inside the container, by design


def test_audit_database_credentials_match(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]["environment"]
    url = compose["services"]["mgcds"]["environment"]["MGCDS_AUDIT_URL"]
    assert (
        url
        == f"postgresql://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@postgres:5432/{postgres['POSTGRES_DB']}"
    )


def test_trusted_issuers_file_allows_the_hapi_server(compose: dict[str, Any]) -> None:
    service = compose["services"]["mgcds"]
    target = service["environment"]["MGCDS_TRUSTED_ISSUERS"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    registry = json.loads((PROJECT_ROOT / mounts[target]).read_text(encoding="utf-8"))
    fhir_servers = [s for issuer in registry.values() for s in issuer["fhir_servers"]]
    hapi_url = compose["services"]["loader"]["environment"]["FHIR_BASE"]
    assert {"url": hapi_url, "allow_private_network": True} in fhir_servers


def test_healthchecks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "/healthz" in " ".join(services["mgcds"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["mgcds"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # HAPI's image is distroless (no shell or curl for a healthcheck): the loader waits for /metadata itself.
    assert services["loader"]["depends_on"]["hapi"]["condition"] == "service_started"
    assert "healthcheck" not in services["hapi"]


def test_loader_is_one_shot_and_mounts_the_patients(compose: dict[str, Any]) -> None:
    loader = compose["services"]["loader"]
    assert loader["restart"] == "no"
    assert "./tests/data/patients:/patients:ro" in loader["volumes"]
    script = PROJECT_ROOT / loader["volumes"][0].split(":")[0]
    text = script.read_text(encoding="utf-8")
    assert "/metadata" in text
    assert "application/fhir+json" in text
    assert list((PROJECT_ROOT / "tests" / "data" / "patients").glob("p*.json"))


def test_dockerfile_runs_mgcds_serve_as_non_root(dockerfile_instructions: list[tuple[str, str]]) -> None:
    instructions = dict(dockerfile_instructions)
    assert instructions["FROM"] == "python:3.11-slim"
    user = instructions["USER"].split(":")[0]
    assert user not in {"root", "0"}
    assert json.loads(instructions["CMD"]) == ["mgcds", "serve"]
    assert instructions["EXPOSE"] == "8080"
    assert "/healthz" in instructions["HEALTHCHECK"]
    # The uid in USER is the one the image creates.
    assert f"--uid {user}" in instructions["RUN"] or any(
        f"--uid {user}" in args for name, args in dockerfile_instructions if name == "RUN"
    )


def test_build_context_excludes_tests_and_local_state() -> None:
    ignored = set(shlex.split((PROJECT_ROOT / ".dockerignore").read_text(encoding="utf-8"), comments=True))
    assert {"tests", ".venv", ".git"} <= ignored
