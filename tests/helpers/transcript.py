"""Normalizing what a server sent so that two implementations' outputs can be compared.

Volatile INFO values (ids, keys, nonces, versions, ports) are replaced by placeholders; in a
transcript every INFO line is reduced to ``INFO\\r\\n`` (INFO contents are compared by the
dedicated INFO tests, so one INFO difference does not fail every case).
"""

from __future__ import annotations

import re
from typing import Any

from tests.helpers.rawclient import parse_info

# Values that differ between runs or between implementations by design.
VOLATILE_INFO_KEYS = {
    "server_id": "<server_id>",
    "version": "<version>",
    "go": "<go>",
    "git_commit": "<git_commit>",
    "port": "<port>",
    "client_id": "<client_id>",
    "nonce": "<nonce>",
    "xkey": "<xkey>",
}

_INFO_LINE = re.compile(rb"(?m)^INFO [^\n]*\n")
EOF_MARK = "<EOF>"


def normalize_info(info: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``info`` with volatile values replaced by placeholders, key order kept.
    ``server_name`` becomes ``<server_id>`` when it is the server id (no name configured)."""
    out: dict[str, Any] = {}
    for k, v in info.items():
        if k == "server_name" and v == info.get("server_id"):
            out[k] = "<server_id>"
        elif k in VOLATILE_INFO_KEYS:
            out[k] = VOLATILE_INFO_KEYS[k]
        else:
            out[k] = v
    return out


def info_items(line: bytes | str) -> list[tuple[str, Any]]:
    """Ordered (key, normalized value) pairs of an INFO line: compares keys, order and values."""
    return list(normalize_info(parse_info(line)).items())


def info_lines(data: bytes) -> list[bytes]:
    """Every INFO line in ``data``."""
    return [m.group(0) for m in _INFO_LINE.finditer(data)]


def normalize_transcript(data: bytes) -> str:
    """Received bytes as text (latin-1, so any byte survives) with INFO lines reduced to
    ``INFO\\r\\n``."""
    return _INFO_LINE.sub(b"INFO\r\n", data).decode("latin-1")
