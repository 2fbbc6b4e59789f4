"""archive.sink: the upload receive path (pooled buffers, adler32 inline, sha256 in a worker)."""

from __future__ import annotations

import hashlib
import io
import os
import zlib

import pytest

from archive.sink import BLOCK, POOL, ReadAdapter, Sink


def _receive(tmp_path, data: bytes, threaded: bool, stream=None, length: int | None = None):
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        sink = Sink(fd, threaded=threaded)
        missing = sink.pump(stream or io.BytesIO(data), len(data) if length is None else length)
    finally:
        os.close(fd)
    return sink, missing


@pytest.mark.parametrize("threaded", [False, True])
def test_hashes_and_bytes_match(tmp_path, threaded):
    data = os.urandom(3 * BLOCK + 12345)
    sink, missing = _receive(tmp_path, data, threaded)
    assert not missing and sink.size == len(data)
    assert sink.adler32 == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    assert sink.sha.hexdigest() == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "out").read_bytes() == data


def test_buffers_are_bounded_and_reused(tmp_path):
    data = os.urandom((POOL + 20) * BLOCK)  # more blocks than the pool holds
    sink, _ = _receive(tmp_path, data, threaded=True)
    assert sink.size == len(data) and 1 <= sink._allocated <= POOL


def test_read_callable_and_short_stream(tmp_path):
    data = os.urandom(BLOCK + 7)
    chunks = [data[:1000], data[1000:]]
    src = ReadAdapter(lambda n: chunks.pop(0)[:n] if chunks else b"")
    sink, missing = _receive(tmp_path, data, threaded=False, stream=src, length=len(data) + 50)
    assert missing == 50 and sink.size == len(data)


def test_read_callable_may_not_overfill(tmp_path):
    src = ReadAdapter(lambda n: b"x" * (n + 1))
    with pytest.raises(ValueError, match="returned"):
        _receive(tmp_path, b"", threaded=False, stream=src, length=10)
