"""Issue 16 B3 on the wire: ``mgcds serve`` with its default two gunicorn workers on SQLite, over real HTTP.

Before, each worker kept its own jtis in memory: the same token was accepted once per worker, and again after every
restart. Now the jtis are in the audit database's table: one acceptance in all, and none after a restart.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.conftest import PROJECT_ROOT
from tests.functional.conftest import load_example
from tests.support.secured_app import ISSUER, PUBLIC_BASE_URL, es384_signing_key
from tests.support.security import SigningKey, jwks_of, live_claims, sign, write_registry
from tests.support.served import clean_environment, free_port, serve

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

PV = "/cds-services/mg-patient-view"


def _environment(tmp_path: Path, key: SigningKey, port: int) -> dict[str, str]:
    registry = write_registry(tmp_path / "registry", {ISSUER: {}}, jwks_of(key))
    return clean_environment(
        tmp_path / "instance", port, MGCDS_TRUSTED_ISSUERS=str(registry), MGCDS_PUBLIC_BASE_URL=PUBLIC_BASE_URL
    )


@contextmanager
def serving(env: dict[str, str]) -> Iterator[str]:
    """``mgcds serve`` (production mode, two workers) until the block ends; yields its base URL."""
    with serve(env, dev=False):
        yield f"http://127.0.0.1:{env['MGCDS_PORT']}"


def _post(base: str, token: str) -> int:
    # A new connection each time: gunicorn's workers race for each accept, so the calls spread over both.
    response = requests.post(
        base + PV,
        json=load_example("patient-view-request.json"),
        headers={"Authorization": f"Bearer {token}", "Connection": "close"},
        timeout=30,
    )
    return response.status_code


def test_b3_one_token_is_accepted_once_by_all_workers_and_never_after_a_restart(tmp_path: Path) -> None:
    key = es384_signing_key()
    env = _environment(tmp_path, key, free_port())
    subprocess.run(  # noqa: S603 - production creates the audit schema explicitly
        [sys.executable, "-m", "cds_service.cli", "audit", "init"], cwd=PROJECT_ROOT, env=env, check=True, timeout=60
    )
    token = sign(key, live_claims(ISSUER, PUBLIC_BASE_URL + PV))
    with serving(env) as base, ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: _post(base, token), range(16)))
    assert sorted(statuses) == [200] + [401] * 15
    with serving(env) as base:
        assert _post(base, token) == 401
        assert _post(base, sign(key, live_claims(ISSUER, PUBLIC_BASE_URL + PV))) == 200
