"""Local copies through the engine: temp name, checksum, mismatch handling, parallel files."""

from __future__ import annotations

import os

from appliance.transfer import Copier, CopyOptions
from appliance.transfer.engine import CopyJob
from appliance.transfer.retry import RetryPolicy


def _copier(**kw) -> Copier:
    return Copier(options=CopyOptions(progress=False, retry=RetryPolicy(attempts=3, initial=0), **kw))


def test_copy_verifies_and_renames(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3_000_000))
    res = _copier().copy(str(src), str(tmp_path / "out" / "dst.bin"))
    assert res.ok and res.verified, res.report()
    assert (tmp_path / "out" / "dst.bin").read_bytes() == src.read_bytes()
    assert not list((tmp_path / "out").glob(".*part*"))
    assert res.to_json()["checksum_type"] == "adler32"


def test_wrong_expected_checksum_retries_then_fails_cleanly(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello world")
    sleeps: list[float] = []
    c = Copier(options=CopyOptions(progress=False, retry=RetryPolicy(attempts=3, initial=0.5, jitter=0)),
               sleep=sleeps.append)
    res = c.copy(str(src), str(tmp_path / "dst.bin"), expected="adler32:00000001")
    assert not res.ok and res.error_type == "ChecksumMismatch" and res.exit_code == 4
    assert res.attempts == 3 and sleeps == [0.5, 1.0]
    assert not (tmp_path / "dst.bin").exists()
    assert not list(tmp_path.glob(".dst.bin*"))


def test_sha256_and_parallel(tmp_path):
    jobs = []
    for i in range(6):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(100_000 + i))
        jobs.append(CopyJob(str(p), str(tmp_path / "out" / f"f{i}")))
    bulk = _copier(checksum="sha256", parallel=3).copy_many(jobs)
    assert bulk.ok and len(bulk.results) == 6
    assert all(r.checksum_type == "sha256" and r.verified for r in bulk.results)


def test_missing_source_is_not_retried(tmp_path):
    res = _copier().copy(str(tmp_path / "nope"), str(tmp_path / "x"))
    assert not res.ok and res.error_type == "NotFound" and res.attempts == 1 and res.exit_code == 7
