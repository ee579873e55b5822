"""Unit conversions between a request's unit and a series' unit, by pint.

A series keeps its canonical unit (any string; pint need not know it). A request may say its
values are in another unit: they are converted, `y = x * scale + offset` (offset for units
such as degC -> K), before they are stored or after they are read. Equal unit strings never
need pint; otherwise both units must be known to pint and of the same dimension (else 422).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from timedb.errors import Unprocessable


@dataclass(frozen=True)
class Conversion:
    """y = x * scale + offset."""

    scale: float = 1.0
    offset: float = 0.0

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.offset == 0.0

    def __call__(self, value: float | None) -> float | None:
        return None if value is None else value * self.scale + self.offset


IDENTITY = Conversion()


@cache
def _registry() -> Any:
    import pint  # ~0.2 s to import and build: only when a conversion is asked for

    return pint.UnitRegistry()


def _unit(registry: Any, text: str) -> tuple[Any, str | None]:
    """The parsed unit, or None and why pint cannot read it."""
    try:
        return registry.parse_units(text), None
    except Exception as exc:  # pint's parser raises many kinds (e.g. ZeroDivisionError for "1/0")
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, reason


@cache
def conversion(source: str, target: str) -> Conversion:
    """How values in `source` become values in `target`; a 422 naming both units when they
    cannot (an unknown unit, or another dimension)."""
    if source == target:
        return IDENTITY
    import pint

    registry = _registry()
    (src, src_error), (dst, dst_error) = _unit(registry, source), _unit(registry, target)
    if src is None or dst is None:
        unknown, reason = (source, src_error) if src is None else (target, dst_error)
        raise Unprocessable(
            f"unit: values in {source!r} cannot be converted to {target!r}: "
            f"{unknown!r} is not a unit timedb knows ({reason})."
        )
    try:
        zero = registry.Quantity(0.0, src).to(dst).magnitude
        one = registry.Quantity(1.0, src).to(dst).magnitude
    except pint.DimensionalityError:
        raise Unprocessable(
            f"unit: values in {source!r} cannot be converted to {target!r} "
            f"({src.dimensionality} is not {dst.dimensionality})."
        ) from None
    except Exception:  # any other failure of pint: a unit it cannot convert
        raise Unprocessable(f"unit: values in {source!r} cannot be converted to {target!r}.") from None
    scale, offset = float(one - zero), float(zero)
    if not (math.isfinite(scale) and math.isfinite(offset)) or scale == 0:
        raise Unprocessable(f"unit: values in {source!r} cannot be converted to {target!r}.")
    return Conversion(scale, offset)
