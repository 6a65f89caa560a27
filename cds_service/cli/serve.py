"""``mgcds serve``: the service under gunicorn (gthread workers), each worker building its own app.

Each worker closes its app when it exits (gunicorn's ``worker_exit`` hook): the audit writer makes a last attempt to
store what waits and logs what is left in the spool (durable there, for the next process or ``mgcds audit replay``).
gunicorn's control socket goes in the instance folder, one per port, so two services on one host never share the
default ``~/.gunicorn/gunicorn.ctl`` (the second would take it over, and remove it when it stops).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from cds_service.cli.common import SettingsSource, Subparsers
from cds_service.config import Settings

log = logging.getLogger("mgcds")
UNIX_SOCKET_PATH_MAX = 104  # sun_path holds 108 bytes on Linux, 104 on the BSDs

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


def dev_review_url(settings: Settings) -> str:
    """The one-time link to the review page for this --dev start (a wildcard bind is opened on loopback)."""
    from cds_service.api.review_auth import DEV_LINK_PATH

    host = settings.host
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - recognising a wildcard bind, not binding one
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}{DEV_LINK_PATH}?token={settings.dev_review_token}"


def dev_review_line(settings: Settings) -> str:
    """The banner's line with the review link."""
    return (
        f"Review page (/audit), one-time link for this start, exchanged for a session cookie when opened:\n"
        f"  {dev_review_url(settings)}\n"
    )


def register(subparsers: Subparsers, get_settings: SettingsSource) -> None:
    """Add ``serve`` and its flags (each overrides its MGCDS_ variable)."""
    serve = subparsers.add_parser("serve", help="serve the CDS Hooks service under gunicorn")
    serve.add_argument("--host", help="bind address (default 127.0.0.1, MGCDS_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8080, MGCDS_PORT)")
    serve.add_argument("--workers", type=int, help="gunicorn worker processes (MGCDS_WORKERS)")
    serve.add_argument("--threads", type=int, help="threads per worker (MGCDS_THREADS)")
    serve.add_argument("--dev", action="store_true", help="development mode: no caller authentication (loud)")
    serve.set_defaults(func=lambda args: run(args, get_settings))


def control_socket_path(settings: Settings) -> Path | None:
    """Where gunicorn's control socket goes for these settings, or None when it is off (or cannot be bound)."""
    if settings.control_socket.strip().lower() == "off":
        return None
    chosen = Path(settings.control_socket) if settings.control_socket.strip() else None
    path = (chosen or settings.instance_path / f"gunicorn-{settings.port}.ctl").resolve()
    if len(str(path).encode()) >= UNIX_SOCKET_PATH_MAX:
        log.warning("gunicorn control socket path %s is too long for a Unix socket: control socket off", path)
        return None
    return path


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn hook, in the worker as it exits: close the app (a last audit drain; it logs what is left)."""
    app = getattr(worker, "wsgi", None)
    extensions = getattr(app, "extensions", None)
    runtime = extensions.get("mgcds.runtime") if isinstance(extensions, dict) else None
    if runtime is not None:
        runtime.close()


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    """gunicorn's configuration for these settings: also used by the benchmark's floor app (bench/floor_app.py).

    ``reuse_port`` (on by default, ``MGCDS_REUSE_PORT``): with it gunicorn (>= 27 measured) binds one listening socket
    per worker with SO_REUSEPORT and the master none, so the kernel spreads new connections over the workers by a
    hash of their addresses. Without it the workers share one socket and accept greedily, and a few long-lived
    keep-alive connections can all land on one worker while the other idles (docs/performance.md, round 2).
    """
    options: dict[str, Any] = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.workers,
        "threads": settings.threads,
        "worker_connections": settings.worker_connections,
        "worker_class": "gthread",
        "reuse_port": settings.reuse_port,
        "timeout": 60,
        "graceful_timeout": 20,
        "accesslog": None,  # our own log lines carry what is allowed (no PHI in URLs or bodies)
        "worker_exit": worker_exit,
    }
    socket_path = control_socket_path(settings)
    if socket_path is None:
        options["control_socket_disable"] = True
    else:
        options["control_socket"] = str(socket_path)
    return options


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port: with SO_REUSEPORT a second service would share it silently.

    The probe binds without SO_REUSEPORT, which fails while a socket listens there (ours with the option too);
    SO_REUSEADDR keeps connections of an earlier run in TIME_WAIT from counting.
    """
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def run(args: argparse.Namespace, get_settings: SettingsSource) -> int:
    """Start gunicorn with the settings and the flags; returns when it stops."""
    from flask import Flask
    from gunicorn.app.base import BaseApplication

    from cds_service import create_app
    from cds_service.api.review_auth import new_dev_review_token
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
    if settings.reuse_port and port_in_use(settings.host, settings.port):
        # gunicorn binds with SO_REUSEPORT, so it would not refuse the address itself: a second service (or an old
        # one still running) would share the port and half of the calls.
        print(f"mgcds serve: {settings.host}:{settings.port} is already in use", file=sys.stderr)
        return 1
    if settings.dev:
        # Made here, before gunicorn forks, so that every worker knows the token; only here, only with --dev.
        settings = settings.with_overrides(dev_review_token=new_dev_review_token(settings.instance_path))
        print(dev_banner(settings), file=sys.stderr)
        print(dev_review_line(settings), file=sys.stderr)
    # Build once in the master so that configuration errors stop the start with a clear message, not a worker
    # crash loop; then release it: each worker builds its own app (the audit writer thread does not survive fork).
    probe: Runtime = create_app(settings).extensions["mgcds.runtime"]
    probe.close()

    class MgcdsApplication(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in gunicorn_options(settings).items():
                self.cfg.set(name, value)

        def load(self) -> Flask:
            return create_app(settings)

    MgcdsApplication().run()
    return 0
