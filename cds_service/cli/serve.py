"""``mgcds serve``: the service under gunicorn (gthread workers), each worker building its own app."""

from __future__ import annotations

import argparse
import sys

from cds_service.cli.common import SettingsSource, Subparsers
from cds_service.config import Settings

DEV_BANNER = """
################################################################################
#  MgCDS DEVELOPMENT MODE: callers are NOT authenticated and any FHIR server   #
#  (http, loopback) may be contacted. Never expose this to a network or PHI.   #
################################################################################
"""
# With an issuer registry, --dev keeps every JWT check and the per-issuer allowlist; it only allows http servers.
DEV_BANNER_WITH_REGISTRY = """
################################################################################
#  MgCDS DEVELOPMENT MODE: callers ARE authenticated (issuer registry), but    #
#  http FHIR servers are allowed. Never expose this to a network or PHI.       #
################################################################################
"""


def dev_banner(settings: Settings) -> str:
    """The development-mode warning that fits the settings: with or without an issuer registry."""
    return DEV_BANNER_WITH_REGISTRY if settings.trusted_issuers is not None else DEV_BANNER


def register(subparsers: Subparsers, get_settings: SettingsSource) -> None:
    """Add ``serve`` and its flags (each overrides its MGCDS_ variable)."""
    serve = subparsers.add_parser("serve", help="serve the CDS Hooks service under gunicorn")
    serve.add_argument("--host", help="bind address (default 127.0.0.1, MGCDS_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8080, MGCDS_PORT)")
    serve.add_argument("--workers", type=int, help="gunicorn worker processes (MGCDS_WORKERS)")
    serve.add_argument("--threads", type=int, help="threads per worker (MGCDS_THREADS)")
    serve.add_argument("--dev", action="store_true", help="development mode: no caller authentication (loud)")
    serve.set_defaults(func=lambda args: run(args, get_settings))


def run(args: argparse.Namespace, get_settings: SettingsSource) -> int:
    """Start gunicorn with the settings and the flags; returns when it stops."""
    from flask import Flask
    from gunicorn.app.base import BaseApplication

    from cds_service import create_app
    from cds_service.logging import configure_logging
    from cds_service.runtime import Runtime

    overrides: dict[str, object] = {}
    for name in ("host", "port", "workers", "threads"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.dev:
        overrides["dev"] = True
    settings = get_settings().with_overrides(**overrides)
    configure_logging(settings.log_level)
    if settings.dev:
        print(dev_banner(settings), file=sys.stderr)
    # Build once in the master so that configuration errors stop the start with a clear message, not a worker
    # crash loop; then release it: each worker builds its own app (the audit writer thread does not survive fork).
    probe: Runtime = create_app(settings).extensions["mgcds.runtime"]
    probe.close()

    class MgcdsApplication(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{settings.host}:{settings.port}")
            self.cfg.set("workers", settings.workers)
            self.cfg.set("threads", settings.threads)
            self.cfg.set("worker_connections", settings.worker_connections)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("timeout", 60)
            self.cfg.set("graceful_timeout", 20)
            self.cfg.set("accesslog", None)  # our own log lines carry what is allowed (no PHI in URLs or bodies)

        def load(self) -> Flask:
            return create_app(settings)

    MgcdsApplication().run()
    return 0
