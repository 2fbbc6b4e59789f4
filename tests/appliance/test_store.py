"""The content-addressed store never exposes a wrong or partial object."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import ChecksumMismatch
from appliance.hashing import sha256_bytes
from appliance.store import ContentStore
from appliance.transfer.checksum import file_checksum


def test_add_and_dedupe(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "s")
    (tmp_path / "f").write_bytes(b"data")
    a = store.add_file(tmp_path / "f")
    b = store.add_bytes(b"data")
    assert a == b and a.sha256 == sha256_bytes(b"data") and store.has(a.sha256)
    assert a.path.stat().st_mode & 0o777 == 0o444


def test_mismatch_leaves_nothing(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "s")
    (tmp_path / "f").write_bytes(b"data")
    with pytest.raises(ChecksumMismatch) as err:
        store.add_file(tmp_path / "f", expected_sha256="0" * 64)
    assert str(tmp_path / "f") in str(err.value)
    assert not store.has("0" * 64) and not store.has(sha256_bytes(b"data"))
    assert list((tmp_path / "s" / "tmp").iterdir()) == []


def test_writer_error_leaves_nothing(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "s")
    with pytest.raises(RuntimeError), store.writer() as w:
        w.write(b"partial")
        raise RuntimeError("connection lost")
    assert list((tmp_path / "s" / "tmp").iterdir()) == []
    assert not store.has(sha256_bytes(b"partial"))


def test_adler32_format(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    assert file_checksum(tmp_path / "f", "adler32") == "00000001"


def test_atomic_write_keeps_a_replaced_files_mode_and_makes_new_files_private(tmp_path):
    import os
    import stat

    from appliance.fsutil import atomic_write_bytes

    tracked = tmp_path / "images.lock"
    tracked.write_text("old\n")
    os.chmod(tracked, 0o644)
    atomic_write_bytes(tracked, b"new\n")
    assert tracked.read_bytes() == b"new\n" and stat.S_IMODE(tracked.stat().st_mode) == 0o644
    secret = tmp_path / "token"
    atomic_write_bytes(secret, b"s3cret\n")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
