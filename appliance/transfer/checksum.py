"""Checksums as transfers use them: algorithm names, streaming digests, RFC 3230 Digest headers.

Pure functions (no I/O besides reading a local file). Adler-32 is the WLCG transfer checksum and
is always written as 8 lowercase hex digits; sha256 is written as 64 lowercase hex digits here,
whatever encoding (base64 in HTTP ``Digest``) a server used.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Protocol

from appliance.hashing import BLOCK, adler32, adler32_hex

ALGORITHMS = ("adler32", "sha256", "md5")
_ALIASES = {"adler32": "adler32", "adler-32": "adler32", "sha256": "sha256", "sha-256": "sha256",
            "md5": "md5"}


def normalise_algorithm(name: str) -> str:
    try:
        return _ALIASES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown checksum algorithm {name!r} (known: {', '.join(ALGORITHMS)})") from None


def parse_expected(text: str) -> tuple[str, str]:
    """``"adler32:0a1b2c3d"`` -> ``("adler32", "0a1b2c3d")`` (value normalised to lowercase)."""
    algo, sep, value = text.partition(":")
    if not sep or not value:
        raise ValueError(f"checksum {text!r} is not ALGORITHM:VALUE")
    algo = normalise_algorithm(algo)
    value = value.strip().lower()
    if algo == "adler32":
        value = value.rjust(8, "0")
    return algo, value


class Digester(Protocol):
    def update(self, data: bytes) -> None: ...

    def hexdigest(self) -> str: ...


class _Adler32:
    def __init__(self) -> None:
        self.value = 1

    def update(self, data: bytes) -> None:
        self.value = adler32(data, self.value)

    def hexdigest(self) -> str:
        return adler32_hex(self.value)


def new_digester(algorithm: str) -> Digester:
    algorithm = normalise_algorithm(algorithm)
    if algorithm == "adler32":
        return _Adler32()
    return hashlib.new(algorithm)


def file_checksum(path: str | os.PathLike[str], algorithm: str) -> str:
    d = new_digester(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(BLOCK):
            d.update(chunk)
    return d.hexdigest()


def normalise_value(algorithm: str, value: str) -> str:
    """Bring a server's checksum text to our canonical hex form."""
    algorithm = normalise_algorithm(algorithm)
    value = value.strip()
    if algorithm == "adler32":
        return value.lower().rjust(8, "0")
    return value.lower()


# RFC 3230 / RFC 5843 names as sent in Want-Digest and answered in Digest.
WANT_DIGEST_NAME = {"adler32": "adler32", "sha256": "sha-256", "md5": "md5"}


def parse_digest_header(header: str | None, algorithm: str) -> str | None:
    """Pick ``algorithm`` out of an RFC 3230 ``Digest`` header; hex, or None when absent."""
    if not header:
        return None
    algorithm = normalise_algorithm(algorithm)
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        try:
            if normalise_algorithm(name) != algorithm:
                continue
        except ValueError:
            continue
        value = value.strip().strip('"')
        if algorithm == "adler32":
            return value.lower().rjust(8, "0")
        try:  # RFC 3230: sha-256 and md5 are base64 of the raw digest
            raw = base64.b64decode(value, validate=True)
            if len(raw) == hashlib.new(algorithm).digest_size:
                return raw.hex()
        except ValueError:
            pass
        return value.lower()
    return None
