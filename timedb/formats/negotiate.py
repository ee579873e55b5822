"""Which format a values read answers in: the `format` parameter, else the Accept header."""

from __future__ import annotations

from timedb import media_types
from timedb.errors import NotAcceptable

# format name -> media type, in the server's order of preference (JSON wins ties)
MEDIA_TYPES = {
    "json": media_types.JSON,
    "csv": media_types.CSV,
    "ndjson": media_types.NDJSON,
    "arrow": media_types.ARROW,
}

Range = tuple[str, str, float]  # type, subtype (either may be "*"), q


def parse_accept(header: str) -> list[Range]:
    """The media ranges of an Accept header, in its order; malformed ones are left out."""
    ranges: list[Range] = []
    for item in header.split(","):
        media, *params = item.split(";")
        kind, slash, sub = media.strip().lower().partition("/")
        if not slash or not kind or not sub or (kind == "*" and sub != "*"):
            continue
        q = 1.0
        for param in params:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
                break  # what follows q are accept-extensions, not media type parameters
        if 0.0 <= q <= 1.0:
            ranges.append((kind, sub, q))
    return ranges


def _quality(media_type: str, ranges: list[Range]) -> tuple[float, int, int]:
    """(q, specificity, -position) of the most specific range matching media_type; q is 0
    when none matches. A more specific range decides even with a lower q (RFC 9110 12.5.1)."""
    kind, _, sub = media_type.partition("/")
    best = (0.0, -1, 0)
    for position, (rkind, rsub, q) in enumerate(ranges):
        if (rkind, rsub) == (kind, sub):
            specificity = 2
        elif (rkind, rsub) == (kind, "*"):
            specificity = 1
        elif (rkind, rsub) == ("*", "*"):
            specificity = 0
        else:
            continue
        if specificity > best[1]:
            best = (q, specificity, -position)
    return best


def prefers(accept: str, media_type: str, over: str) -> bool:
    """True when the Accept header ranks media_type above `over` (by _quality's order)."""
    ranges = parse_accept(accept)
    return _quality(media_type, ranges) > _quality(over, ranges)


def negotiate(fmt: str | None, accept: str | None) -> str:
    """The format to answer in: `fmt` when given, else the best match for the Accept
    header (q-values first, then the more specific range, then the client's order, then
    the server's: a missing Accept, `*/*` or a browser's default gets JSON)."""
    if fmt is not None:
        return fmt
    if accept is None or not accept.strip():
        return "json"
    ranges = parse_accept(accept)
    scored = [(_quality(media, ranges), -rank, name) for rank, (name, media) in enumerate(MEDIA_TYPES.items())]
    (q, _, _), _, name = max(scored)
    if q <= 0.0:
        available = list(MEDIA_TYPES.values())
        raise NotAcceptable(
            f"None of the media types in Accept is available: ask for one of {', '.join(available)} "
            f"(or use the format parameter: {', '.join(MEDIA_TYPES)}).",
            available=available,
        )
    return name
