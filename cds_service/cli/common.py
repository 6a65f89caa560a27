"""What every ``mgcds`` command module shares: how it registers itself and where it gets its Settings."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias

from cds_service.config import Settings

# The ``mgcds`` sub-command table each command module adds its parser to.
# (a string: argparse's class is generic only to the type checker)
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
# Settings are read when a command runs, not when the parser is built: `mgcds --help` needs no valid environment.
SettingsSource = Callable[[], Settings]
