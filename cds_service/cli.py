"""`mgcds`: serve, evaluate a patient without an EHR, fire hooks, review the audit log, check terminology."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from cds_service.config import Settings, load_settings
from cds_service.errors import ConfigurationError, MgCDSError

DEV_BANNER = """
################################################################################
#  MgCDS DEVELOPMENT MODE: callers are NOT authenticated and any FHIR server   #
#  (http, loopback) may be contacted. Never expose this to a network or PHI.   #
################################################################################
"""


def _settings_from_env() -> Settings:
    return load_settings()


def _serve(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    from cds_service import create_app
    from cds_service.logging import configure_logging

    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.workers is not None:
        overrides["workers"] = args.workers
    if args.threads is not None:
        overrides["threads"] = args.threads
    if args.dev:
        overrides["dev"] = True
    settings = _settings_from_env().with_overrides(**overrides)
    configure_logging(settings.log_level)
    if settings.dev:
        print(DEV_BANNER, file=sys.stderr)
    # Build once in the master so that configuration errors stop the start with a clear message, not a worker
    # crash loop; then release it: each worker builds its own app (the audit writer thread does not survive fork).
    probe = create_app(settings)
    probe.extensions["mgcds.runtime"].audit_log.close()
    probe.extensions["mgcds.runtime"].fhir_client.close()

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

        def load(self) -> Any:
            return create_app(settings)

    MgcdsApplication().run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `mgcds` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="mgcds", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the CDS Hooks service under gunicorn")
    serve.add_argument("--host", help="bind address (default 127.0.0.1, MGCDS_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8080, MGCDS_PORT)")
    serve.add_argument("--workers", type=int, help="gunicorn worker processes (MGCDS_WORKERS)")
    serve.add_argument("--threads", type=int, help="threads per worker (MGCDS_THREADS)")
    serve.add_argument("--dev", action="store_true", help="development mode: no caller authentication (loud)")
    serve.set_defaults(func=_serve)

    for register in _subcommand_registrars():
        register(sub, _settings_from_env)
    return parser


def _subcommand_registrars() -> list[Callable[[Any, Callable[[], Settings]], None]]:
    from cds_service.audit.cli import register as register_audit
    from cds_service.evaluate import register as register_evaluate
    from cds_service.invoke import register as register_invoke
    from terminology.cli import register as register_terminology

    return [
        register_evaluate,
        register_invoke,
        register_audit,
        lambda subparsers, _get_settings: register_terminology(subparsers),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mgcds` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # Subcommands set func(args), or handler(args, out) where they write a report to a stream.
        result: int = args.func(args) if hasattr(args, "func") else args.handler(args, sys.stdout)
    except ConfigurationError as exc:
        print(f"mgcds: configuration error: {exc}", file=sys.stderr)
        return 2
    except MgCDSError as exc:
        print(f"mgcds: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): not an error worth a traceback.
        sys.stderr.close()
        return 0
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
