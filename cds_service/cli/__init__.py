"""`mgcds`: serve, evaluate a patient without an EHR, fire hooks, review the audit log, check terminology.

One module per command (``serve``, ``evaluate``, ``invoke``, ``dry-run``, ``audit``, ``terminology``), each with
``register(subparsers, get_settings)``; each builds what it needs with the factory helpers the app uses
(``cds_service.factory``). Settings are read when a command runs, so ``mgcds --help`` needs no environment.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from cds_service.cli.common import SettingsSource, Subparsers
from cds_service.config import Settings, load_settings
from cds_service.errors import ConfigurationError, MgCDSError

Registrar = Callable[[Subparsers, SettingsSource], None]


def _registrars() -> list[Registrar]:
    from cds_service.cli import audit, dry_run, evaluate, invoke, serve, terminology

    return [
        serve.register,
        evaluate.register,
        invoke.register,
        dry_run.register,
        audit.register,
        terminology.register,
    ]


def build_parser(get_settings: SettingsSource = load_settings) -> argparse.ArgumentParser:
    """The `mgcds` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="mgcds", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _registrars():
        register(sub, get_settings)
    return parser


def main(argv: Sequence[str] | None = None, *, settings: Settings | None = None) -> int:
    """Entry point of the `mgcds` console script (``settings``: use these instead of the environment)."""
    parser = build_parser((lambda: settings) if settings is not None else load_settings)
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
