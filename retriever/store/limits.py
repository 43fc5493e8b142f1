"""What a record may hold: every limit in one place, checked before anything reaches the engine.

Whatever Qdrant Edge cannot store, or stores but cannot replay from its write-ahead log, must
never reach it: one such point bricks the whole collection. Measured on qdrant-edge-py 0.9: a
payload whose objects/arrays nest 124 levels deep (the payload object included) is accepted by
``update`` but makes every later ``EdgeShard.load`` fail with ``RecursionLimitExceeded``; 123
levels reload. Lone surrogates, NaN and infinities are refused by the binding at write time (after
the collection exists); integers at or above 2**64 are silently turned into floats.
"""

from __future__ import annotations

import json
import re
from typing import Any

ENGINE_MAX_PAYLOAD_DEPTH = 123  # measured (see above); the payload object itself is level 1
MAX_METADATA_DEPTH = 32  # levels of objects/arrays in a document's metadata, the object itself included
MAX_METADATA_BYTES = 64 * 1024  # the metadata serialized as UTF-8 JSON
MAX_ID_CHARS = 512  # a document id
MAX_TITLE_CHARS = 4096  # a title (stored with every chunk of its document)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # integers in metadata
MAX_CSV_RECORD_LINES = 1000  # physical lines one CSV record (a quoted field with newlines) may span
MAX_CALIBRATION_DEPTH = 16  # levels of a calibration record (funnel writes 4: encoder.trials[i].field)
MAX_CALIBRATION_BYTES = 4 * 1024 * 1024  # a calibration record file (funnel writes a few KiB)

_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


class LimitError(ValueError):
    """A value over a limit; the message says which limit (without the ``file:line``)."""


def check_string(value: str, what: str, max_chars: int | None = None) -> None:
    """Refuse a lone surrogate (not storable Unicode) and, with ``max_chars``, an over-long string."""
    if max_chars is not None and len(value) > max_chars:
        raise LimitError(f"{what} is {len(value):,} characters long (at most {max_chars:,})")
    if (bad := _SURROGATE.search(value)) is not None:
        raise LimitError(f"{what} holds a lone surrogate (U+{ord(bad.group()):04X}) at character {bad.start():,}, "
                         "which is not valid Unicode")


def nesting_depth(value: Any, stop_after: int) -> int:
    """Levels of nested objects/arrays in ``value`` (a scalar is 0); iterative, and stops counting
    once past ``stop_after`` so a pathological value costs no more than the limit."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > stop_after:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def json_text_depth(text: str, stop_after: int) -> int:
    """Levels of nested objects/arrays in the JSON ``text`` (brackets inside strings not counted),
    without parsing it: Python's parser recurses per level and raises ``RecursionError`` near 1,000.
    Stops counting once past ``stop_after``. Malformed text gets some count; the parser refuses it."""
    deepest = depth = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_after:
                    break
        else:
            depth -= 1
    return deepest


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words (``object``, ``array``, ``string``, ``number``, …)."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "null" if value is None else "number"


def _has_huge_int(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def storable_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` as plain JSON the engine can store and replay, or :class:`LimitError`.

    Dates become ISO strings and keys become strings; refused: nesting deeper than
    :data:`MAX_METADATA_DEPTH`, more than :data:`MAX_METADATA_BYTES`, NaN or infinities, integers
    outside the signed 64-bit range, lone surrogates, values that are not JSON.
    """
    depth = nesting_depth(metadata, MAX_METADATA_DEPTH)
    if depth > MAX_METADATA_DEPTH:
        raise LimitError(f"metadata nests more than {MAX_METADATA_DEPTH} levels deep")
    try:
        text = json.dumps(metadata, allow_nan=False, ensure_ascii=False, default=_json_default)
    except (ValueError, TypeError, RecursionError) as exc:
        raise LimitError(f"metadata cannot be stored ({exc})") from None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise LimitError(f"metadata holds a lone surrogate (U+{ord(exc.object[exc.start]):04X}), "
                         "which is not valid Unicode") from None
    if size > MAX_METADATA_BYTES:
        raise LimitError(f"metadata is {size:,} bytes as JSON (at most {MAX_METADATA_BYTES:,})")
    plain = json.loads(text)
    if _has_huge_int(plain):
        raise LimitError("metadata holds an integer outside the signed 64-bit range")
    return plain

# Disk: the engine writes through memory-mapped files, and a write into a mapped page the file
# system cannot back kills the process with SIGBUS (no exception, no message). Its files are
# created sparse in pieces of ENGINE_FILE_BYTES (WAL segments, vector chunks, payload pages; on
# tmpfs, opening a collection fills the holes of its in-RAM vectors' chunks). So funnel refuses,
# with a clear message, to start a write unless the holes of the collection's files, the write's
# estimated size and a margin are free.
MIN_FREE_BYTES = 16 * 1024 * 1024  # the safety margin
ENGINE_FILE_BYTES = 32 * 1024 * 1024  # measured: qdrant-edge-py 0.9 preallocates files this size
NEW_SHARD_FILES = 3  # besides one vector chunk per dim: two WAL segments and a payload page
POINT_OVERHEAD_BYTES = 1024  # per point, besides its vectors and payload
WRITE_AMPLIFICATION = 3  # vectors and payloads land in the WAL, the segment and (on optimize) a copy
