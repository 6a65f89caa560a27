"""Command-line glue for SMART Backend Services: the ``--smart-*`` flags any command can add, and a small tool.

A command that reads a FHIR server calls :func:`add_smart_arguments` on its parser and, once parsed,
:func:`fhir_token_from_args` (a token string, as ``--token`` gives) or :func:`smart_auth_from_args` (the
:class:`SmartBackendAuth`, for a 401 retry or a long run that outlives one token).

``python -m cds_service.fhir.smart_cli jwks --smart-key KEY.pem --smart-kid KID`` prints the public JWK Set to
register with the EHR (or publish at the JKU); ``... check --fhir-server URL --smart-client-id ID ...`` fetches a
token and says what it grants, without printing it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import requests

from cds_service.errors import ConfigurationError, MgCDSError
from cds_service.fhir.smart import DEFAULT_SCOPE, SmartBackendAuth, SmartSettings
from cds_service.fhir.smart_keys import ALGORITHMS, load_signing_key, public_jwks

_FLAGS = {
    "smart_client_id": "--smart-client-id",
    "smart_key": "--smart-key",
    "smart_kid": "--smart-kid",
    "smart_alg": "--smart-alg",
    "smart_scope": "--smart-scope",
    "smart_token_url": "--smart-token-url",
    "smart_jku": "--smart-jku",
}
_REQUIRED = ("smart_client_id", "smart_key", "smart_kid")


def add_smart_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``--smart-*`` flags (SMART Backend Services for ``--fhir-server``) to ``parser``."""
    group = parser.add_argument_group(
        "SMART Backend Services", "get the FHIR access token with a signed client assertion instead of --token"
    )
    group.add_argument("--smart-client-id", metavar="ID", help="client id the EHR issued for this registration")
    group.add_argument("--smart-key", metavar="PEM", help="private key file (RSA >= 2048 bits or EC P-384)")
    group.add_argument("--smart-kid", metavar="KID", help="kid of the matching public key registered with the EHR")
    group.add_argument("--smart-alg", choices=ALGORITHMS, help="assertion algorithm (default: the one the key fits)")
    group.add_argument("--smart-scope", metavar="SCOPES", help=f"space-separated scopes (default: {DEFAULT_SCOPE})")
    group.add_argument(
        "--smart-token-url", metavar="URL", help="token endpoint (default: from .well-known/smart-configuration)"
    )
    group.add_argument("--smart-jku", metavar="URL", help="JWKS URL registered with the EHR, sent as the jku header")


def _given(args: argparse.Namespace) -> list[str]:
    return [name for name in _FLAGS if getattr(args, name, None) is not None]


def smart_settings_from_args(args: argparse.Namespace) -> SmartSettings | None:
    """The :class:`SmartSettings` the flags describe; None when no ``--smart-*`` flag was given."""
    given = _given(args)
    if not given:
        return None
    missing = [_FLAGS[name] for name in _REQUIRED if getattr(args, name, None) is None]
    if missing:
        raise ConfigurationError(f"SMART Backend Services also needs {', '.join(missing)}")
    if getattr(args, "token", None):
        raise ConfigurationError("give either --token or the --smart-* flags, not both")
    return SmartSettings(
        client_id=args.smart_client_id,
        private_key_path=Path(args.smart_key),
        key_id=args.smart_kid,
        algorithm=args.smart_alg,
        scope=DEFAULT_SCOPE if args.smart_scope is None else args.smart_scope,
        token_endpoint=args.smart_token_url,
        jku=args.smart_jku,
    )


def smart_auth_from_args(
    args: argparse.Namespace, fhir_server: str | None = None, *, session: requests.Session | None = None
) -> SmartBackendAuth | None:
    """A :class:`SmartBackendAuth` for ``fhir_server`` (default ``args.fhir_server``); None without the flags."""
    settings = smart_settings_from_args(args)
    if settings is None:
        return None
    base = fhir_server or getattr(args, "fhir_server", None)
    if not base:
        raise ConfigurationError("the --smart-* flags need a FHIR server (--fhir-server)")
    return SmartBackendAuth(settings, base, session=session)


def fhir_token_from_args(args: argparse.Namespace, fhir_server: str | None = None) -> str | None:
    """The bearer token for the FHIR server: a SMART token when the flags are given, else ``--token`` (or None)."""
    auth = smart_auth_from_args(args, fhir_server)
    if auth is None:
        token: str | None = getattr(args, "token", None)
        return token
    return auth.access_token()


# -- python -m cds_service.fhir.smart_cli -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cds_service.fhir.smart_cli", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    jwks = commands.add_parser("jwks", help="print the public JWK Set of --smart-key (to register or publish)")
    jwks.add_argument("--smart-key", metavar="PEM", required=True, help="private key file")
    jwks.add_argument("--smart-kid", metavar="KID", required=True, help="the key id to publish it under")
    jwks.add_argument("--smart-alg", choices=ALGORITHMS, help="algorithm (default: the one the key fits)")
    check = commands.add_parser("check", help="get a token from the FHIR server's authorization server")
    check.add_argument("--fhir-server", required=True, help="FHIR base URL")
    add_smart_arguments(check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jwks`` or ``check``; exit status 1 with a message on any error."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "jwks":
            key = load_signing_key(args.smart_key, args.smart_kid, args.smart_alg)
            json.dump(public_jwks(key), sys.stdout, indent=2)
            sys.stdout.write("\n")
            return 0
        auth = smart_auth_from_args(args)
        if auth is None:
            raise ConfigurationError("check needs --smart-client-id, --smart-key and --smart-kid")
        token = auth.token()
        lifetime = token.expires_at - auth.clock()
        print(f"token endpoint: {auth.configuration().token_endpoint}")
        print(f"access token obtained (not shown): expires in {lifetime:.0f} s")
        print(f"granted scope: {token.scope if token.scope is not None else '(not stated by the server)'}")
        return 0
    except MgCDSError as exc:
        print(f"smart: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover - exercised through main() in the tests
    sys.exit(main())
