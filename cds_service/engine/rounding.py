"""Half-up rounding of floats without binary-float surprises (clinical-rules.md sections 2 and 3)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal

# Wide enough for any finite float (up to ~1.8e308) quantized to 2 decimals: rounding never raises.
_CONTEXT = Context(prec=400, rounding=ROUND_HALF_UP)


def round_half_up(value: float, places: int) -> float:
    """``value`` rounded to ``places`` decimals, halves up (0.125 -> 0.13, 68.5 -> 69)."""
    exponent = Decimal(1).scaleb(-places)
    return float(_CONTEXT.quantize(Decimal(repr(value)), exponent))


def number_text(value: float) -> str:
    """A value as reported, never rounded and without a trailing ".0": 29.6 -> "29.6", 72.0 -> "72"."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
