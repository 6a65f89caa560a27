"""MgCDS: a CDS Hooks 2.0 service for magnesium depletion risk."""

from __future__ import annotations
