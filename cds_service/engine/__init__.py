"""MgCDS decision engine: pure functions from facts and `now` to an assessment (no I/O)."""
