"""Label values from text Slurm's users control (user names, accounts,
reasons), kept short without ever merging two different values.

A value longer than MAX_LABEL_BYTES in UTF-8 keeps its first characters (cut
on a character boundary, never inside one) and ends in `~` and the first 8
hex digits of the SHA-256 of the whole value: two values that share a long
prefix stay two series, and the same value always gives the same label.
"""

from __future__ import annotations

import hashlib

MAX_LABEL_BYTES = 48
_HASH_HEX = 8
_MARK = "~"


def bounded(value: str, limit: int = MAX_LABEL_BYTES) -> str:
    """`value` if it fits in `limit` UTF-8 bytes, else a stable shortened
    form of exactly at most `limit` bytes."""
    data = value.encode("utf-8", errors="surrogatepass")
    if len(data) <= limit:
        return value
    digest = hashlib.sha256(data).hexdigest()[:_HASH_HEX]
    room = limit - len(_MARK) - _HASH_HEX
    head = data[:room].decode("utf-8", errors="ignore")  # drops a character cut in two
    return f"{head}{_MARK}{digest}"
