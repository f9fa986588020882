"""Entity tags for optimistic concurrency: ``ETag`` out, ``If-Match`` / ``If-None-Match`` in.

A record's tag is a hash of the bytes of its JSON representation (:func:`etag_of_bytes`, as
the CRUD routes send it) or of its JSON-safe column values (:func:`etag_of`, see
:func:`storage.auditor.to_json_safe`), so it changes exactly when a stored value changes and
every process computes the same tag for the same row. Comparison follows RFC 9110: ``If-Match``
compares strongly (a weak tag ``W/"..."`` never matches), ``If-None-Match`` weakly, and ``*``
matches any existing record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["etag_of", "etag_of_bytes", "if_match", "if_none_match"]


def etag_of(snapshot: Mapping[str, Any]) -> str:
    """The quoted strong entity tag of a JSON-safe snapshot of a row."""
    text = json.dumps(snapshot, sort_keys=True, separators=(",", ":"), default=str)
    return etag_of_bytes(text.encode())


def etag_of_bytes(content: bytes) -> str:
    """The quoted strong entity tag of a representation: a hash of its bytes."""
    return '"' + hashlib.blake2b(content, digest_size=16).hexdigest() + '"'


def if_match(header: str, etag: str) -> bool:
    """Whether an ``If-Match`` header lets a write to the record tagged ``etag`` go ahead."""
    tags = _tags(header)
    return "*" in tags or etag in tags


def if_none_match(header: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names the record tagged ``etag`` (or is ``*``)."""
    tags = [tag.removeprefix("W/") for tag in _tags(header)]
    return "*" in tags or etag in tags


def _tags(header: str) -> list[str]:
    tags = []
    for raw in header.split(","):
        tag = raw.strip()
        # Tolerate clients that drop the quotes: the tag itself never contains any.
        if tag and tag != "*" and not tag.startswith(('"', "W/")):
            tag = f'"{tag}"'
        tags.append(tag)
    return tags
