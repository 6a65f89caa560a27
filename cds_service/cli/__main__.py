"""``python -m cds_service.cli``: the `mgcds` command without the console script."""

from __future__ import annotations

import sys

from cds_service.cli import main

sys.exit(main())
