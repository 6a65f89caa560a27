"""``mgcds terminology check | coverage``: the value sets' own commands (terminology/cli.py), mounted here."""

from __future__ import annotations

from cds_service.cli.common import SettingsSource, Subparsers


def register(subparsers: Subparsers, get_settings: SettingsSource) -> None:
    """Add ``terminology`` and its sub-commands (they read value set files only: no Settings)."""
    from terminology.cli import register as register_terminology

    register_terminology(subparsers)
