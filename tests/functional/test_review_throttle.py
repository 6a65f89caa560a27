"""Issue 16 B11: wrong reviewer credentials cannot buy unbounded password hashing.

The attack of the issue, reproduced on a real threaded HTTP server on loopback: many parallel wrong basic-auth
guesses at /audit. Each check takes a unit of the per-client and the overall budget before anything is hashed, so
scrypt runs at most as often as the budgets allow, however the guesses interleave; the rest are 429 with a
Retry-After. A reviewer already verified passes without hashing. (bench/review_guessing.py measures the hook
latency under the same attack against `mgcds serve`; tests/integration/test_review_guessing.py runs it.)
"""

from __future__ import annotations

import base64
import http.client
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from cds_service.api import review
from cds_service.api.review import create_review_blueprint
from cds_service.api.review_auth import AuthThrottle, client_key
from tests.unit.audit.helpers import AuditPair, sqlite_pair

USER = "auditor"
PASSWORD = "correct horse battery staple"
TOKEN = "reviewer-token-0123456789abcdef"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


WRONG = _basic(USER, "Tr0ub4dor&3")
RIGHT = _basic(USER, PASSWORD)


@dataclass
class Served:
    """The review page on a loopback port, and how many password hashes it has run."""

    port: int
    hashes: Callable[[], int]

    def get(
        self, headers: dict[str, str], source: str = "127.0.0.1", path: str = "/audit/"
    ) -> http.client.HTTPResponse:
        """One request from the ``source`` address (any of 127.0.0.0/8 reaches the loopback listener)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30, source_address=(source, 0))
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response


@pytest.fixture
def audit_log(tmp_path: Path) -> Iterator[AuditPair]:
    """An empty SQLite audit log."""
    pair = sqlite_pair(tmp_path)
    yield pair
    pair.close()


@pytest.fixture
def serve(audit_log: AuditPair, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[AuthThrottle], Served]]:
    """Start the review blueprint with a given throttle on a threaded loopback server, counting scrypt runs."""
    count = 0
    lock = threading.Lock()
    real_check = review.check_password_hash

    def counting_check(pwhash: str, password: str) -> bool:
        nonlocal count
        with lock:
            count += 1
        return real_check(pwhash, password)

    monkeypatch.setattr(review, "check_password_hash", counting_check)
    password_hash = generate_password_hash(PASSWORD)
    servers = []

    def start(throttle: AuthThrottle) -> Served:
        app = Flask(__name__)
        app.register_blueprint(
            create_review_blueprint(
                audit_log.reader,
                reviewer_token=TOKEN,
                reviewer_user=USER,
                reviewer_password_hash=password_hash,
                throttle=throttle,
            )
        )
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return Served(server.server_port, lambda: count)

    yield start
    for server in servers:
        server.shutdown()


def _parallel(served: Served, jobs: list[tuple[dict[str, str], str]]) -> list[http.client.HTTPResponse]:
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(lambda job: served.get(*job), jobs))


def test_32_parallel_guesses_from_one_address_hash_only_its_budget(
    serve: Callable[[AuthThrottle], Served], caplog: pytest.LogCaptureFixture
) -> None:
    served = serve(AuthThrottle("3/minute", "100/minute"))
    answers = _parallel(served, [(WRONG, "127.0.0.1")] * 32)
    noted = [record.getMessage() for record in caplog.records if "over budget" in record.getMessage()]
    assert len(noted) == 1  # the refusals are counted in one line, not logged one by one
    assert served.hashes() == 3
    assert Counter(answer.status for answer in answers) == {401: 3, 429: 29}
    for answer in answers:
        if answer.status == 429:
            retry_after = answer.getheader("Retry-After")
            assert retry_after is not None
            assert 1 <= int(retry_after) <= 60
            assert answer.getheader("Cache-Control") == "no-store"


def test_guesses_from_many_addresses_stop_at_the_overall_budget(serve: Callable[[AuthThrottle], Served]) -> None:
    served = serve(AuthThrottle("3/minute", "5/minute"))
    sources = [f"127.0.0.{n}" for n in range(2, 6)]  # four clients, eight guesses each
    answers = _parallel(served, [(WRONG, source) for source in sources for _ in range(8)])
    assert served.hashes() == 5
    assert Counter(answer.status for answer in answers) == {401: 5, 429: 27}


def test_a_verified_reviewer_is_not_locked_out_by_an_attack(serve: Callable[[AuthThrottle], Served]) -> None:
    served = serve(AuthThrottle("2/minute", "4/minute"))
    assert served.get(RIGHT).status == 200  # one hash, then remembered
    assert served.hashes() == 1
    attack = _parallel(served, [(WRONG, f"127.0.0.{n}") for n in range(2, 10) for _ in range(4)])
    assert Counter(answer.status for answer in attack)[401] == 3  # the overall budget: 4, one spent by the reviewer
    hashed = served.hashes()
    for path in ("/audit/", "/audit/static/audit.css", "/audit/chain"):  # a browser resends it every time
        assert served.get(RIGHT, path=path).status == 200
    assert served.hashes() == hashed  # no further hashing for a credential that passed
    # A client that spent its budget waits, without a hash, whatever it sends next that is not already verified.
    assert served.get(_basic(USER, PASSWORD + " "), "127.0.0.2").status == 429
    assert served.hashes() == hashed


def test_wrong_bearer_tokens_count_too(serve: Callable[[AuthThrottle], Served]) -> None:
    served = serve(AuthThrottle("3/minute", "100/minute"))
    statuses = [served.get({"Authorization": f"Bearer guess-{n}"}).status for n in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    assert served.get({"Authorization": f"Bearer {TOKEN}"}).status == 429  # right, but after the budget
    assert served.get({"Authorization": f"Bearer {TOKEN}"}, "127.0.0.9").status == 200  # another client
    assert served.hashes() == 0  # a bearer token is compared, never hashed


def test_no_credential_at_all_costs_no_budget(serve: Callable[[AuthThrottle], Served]) -> None:
    served = serve(AuthThrottle("1/minute", "1/minute"))
    assert [served.get({}).status for _ in range(5)] == [401] * 5  # a browser's first request, before the prompt
    assert served.get(RIGHT).status == 200


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # the same host's block: one budget
        ("::ffff:192.0.2.7", "192.0.2.7"),
        (None, "unknown"),
    ],
)
def test_the_client_key_groups_an_ipv6_block(address: str | None, key: str) -> None:
    assert client_key(address) == key
