"""The ``--smart-*`` flags other commands add, and the small ``jwks`` / ``check`` tool."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.errors import ConfigurationError
from cds_service.fhir.smart import DEFAULT_SCOPE, SmartBackendAuth
from cds_service.fhir.smart_cli import (
    add_smart_arguments,
    fhir_token_from_args,
    main,
    smart_auth_from_args,
    smart_settings_from_args,
)
from tests.support.smart_peer import SmartPeer, running_smart_peer

CLIENT_ID = "cli-client"
KID = "cli-key"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def key_path(tmp_path_factory: pytest.TempPathFactory, key: Any) -> Path:
    path = tmp_path_factory.mktemp("smart-cli") / "key.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


@pytest.fixture
def peer(key: Any) -> Iterator[SmartPeer]:
    with running_smart_peer(CLIENT_ID, {KID: key.public_key()}) as running:
        yield running


def _parse(*argv: str) -> argparse.Namespace:
    """A parser shaped like `mgcds evaluate`: --fhir-server and --token, plus the SMART flags."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--fhir-server")
    parser.add_argument("--token")
    add_smart_arguments(parser)
    return parser.parse_args(list(argv))


def test_no_smart_flags_means_no_smart_and_token_passes_through() -> None:
    args = _parse("--fhir-server", "https://ehr.example.org/fhir", "--token", "given")
    assert smart_settings_from_args(args) is None
    assert smart_auth_from_args(args) is None
    assert fhir_token_from_args(args) == "given"
    assert fhir_token_from_args(_parse()) is None


def test_flags_become_settings(key_path: Path) -> None:
    args = _parse(
        "--smart-client-id",
        CLIENT_ID,
        "--smart-key",
        str(key_path),
        "--smart-kid",
        KID,
        "--smart-alg",
        "ES384",
        "--smart-scope",
        "system/Patient.rs",
        "--smart-token-url",
        "https://ehr.example.org/token",
        "--smart-jku",
        "https://mgcds.example.org/jwks.json",
    )
    settings = smart_settings_from_args(args)
    assert settings is not None
    assert (settings.client_id, settings.private_key_path, settings.key_id) == (CLIENT_ID, key_path, KID)
    assert (settings.algorithm, settings.scope) == ("ES384", "system/Patient.rs")
    assert settings.token_endpoint == "https://ehr.example.org/token"
    assert settings.jku == "https://mgcds.example.org/jwks.json"
    defaults = smart_settings_from_args(
        _parse("--smart-client-id", CLIENT_ID, "--smart-key", str(key_path), "--smart-kid", KID)
    )
    assert defaults is not None
    assert defaults.scope == DEFAULT_SCOPE
    assert defaults.algorithm is None


def test_incomplete_or_conflicting_flags_say_what_is_wrong(key_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="--smart-key, --smart-kid"):
        smart_settings_from_args(_parse("--smart-client-id", CLIENT_ID))
    with pytest.raises(ConfigurationError, match="either --token or"):
        smart_settings_from_args(
            _parse("--token", "t", "--smart-client-id", "c", "--smart-key", str(key_path), "--smart-kid", "k")
        )
    with pytest.raises(ConfigurationError, match="--fhir-server"):
        smart_auth_from_args(_parse("--smart-client-id", "c", "--smart-key", str(key_path), "--smart-kid", "k"))


def test_bad_alg_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse("--smart-alg", "HS256")
    assert "invalid choice" in capsys.readouterr().err


def test_flags_give_a_token_from_the_authorization_server(peer: SmartPeer, key_path: Path) -> None:
    args = _parse(
        "--fhir-server", peer.base_url, "--smart-client-id", CLIENT_ID, "--smart-key", str(key_path), "--smart-kid", KID
    )
    auth = smart_auth_from_args(args)
    assert isinstance(auth, SmartBackendAuth)
    assert auth.fhir_base == peer.base_url
    assert fhir_token_from_args(args) == "token-1-" + CLIENT_ID
    assert jwt.get_unverified_header(peer.token_forms[0]["client_assertion"])["alg"] == "ES384"


def test_jwks_command_prints_the_public_key(key: Any, key_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jwks", "--smart-key", str(key_path), "--smart-kid", KID]) == 0
    jwks = json.loads(capsys.readouterr().out)
    (jwk,) = jwks["keys"]
    assert (jwk["kid"], jwk["alg"], jwk["crv"]) == (KID, "ES384", "P-384")
    assert "d" not in jwk
    assert jwt.PyJWK(jwk).key.public_numbers() == key.public_key().public_numbers()


def test_check_command_reports_the_token_without_printing_it(
    peer: SmartPeer, key_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["check", "--fhir-server", peer.base_url, "--smart-client-id", CLIENT_ID, "--smart-key", str(key_path)]
    assert main([*argv, "--smart-kid", KID]) == 0
    out = capsys.readouterr().out
    assert peer.token_url in out
    assert "expires in 300 s" in out or "expires in 299 s" in out
    assert "token-1" not in out
    assert main([*argv, "--smart-kid", "unknown-kid"]) == 1
    err = capsys.readouterr().err
    assert "invalid_client" in err
    assert "token-" not in err
