"""The FHIR client keeps a connection per request it may have in flight (requests' default pool keeps 10)."""

from __future__ import annotations

from cds_service.fhir.client import FhirClient


def test_pool_holds_as_many_connections_as_concurrent_requests() -> None:
    client = FhirClient(max_concurrency=32)
    try:
        for scheme in ("http://", "https://"):
            adapter = client.session.get_adapter(scheme + "fhir.example.org/")
            assert adapter._pool_maxsize == 32  # type: ignore[attr-defined]
    finally:
        client.close()


def test_small_concurrency_keeps_the_default_pool() -> None:
    client = FhirClient(max_concurrency=4)
    try:
        assert client.session.get_adapter("https://fhir.example.org/")._pool_maxsize == 10  # type: ignore[attr-defined]
    finally:
        client.close()
