"""gfal2 backend against a real Globus GridFTP server (GSI with the test PKI, mapped to nobody).

Covers get/put with end-to-end adler32, agreement with globus-url-copy, parallel files, resume
of a partial download (globus-url-copy -partial-offset), several MODE E streams, and the faults:
server killed mid-transfer and restarted, a corrupted source byte, an unreachable port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import zlib

import pytest

from appliance.transfer import Copier, CopyOptions, Credentials
from appliance.transfer.engine import CopyJob
from appliance.transfer.gfal import available
from appliance.transfer.retry import RetryPolicy
from appliance.transfer.select import Backends
from tests.appliance.transfer.servers import free_port
from tests.prereq import require


@pytest.fixture(params=["globus", "gfal2"])
def copier(request, pki, proxy, gridftp):
    """Both GridFTP data movers: globus-url-copy (default) and gfal2's own streamed copy."""
    require(available(), "python3-gfal2 not importable")
    if request.param == "globus":
        require(shutil.which("globus-url-copy") is not None, "globus-url-copy not installed")
    creds = Credentials(proxy=proxy, ca_dir=str(pki.cert_dir))
    return Copier(creds, CopyOptions(progress=False, retry=RetryPolicy(attempts=4, initial=0.3)),
                  Backends(creds, {"gsiftp": request.param}))


def adler(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def test_get_put_roundtrip_verified(copier, gridftp, tmp_path):
    data = os.urandom(5_000_000)
    gridftp.put_file("rt/a.bin", data)
    res = copier.copy(gridftp.url("rt/a.bin"), str(tmp_path / "a.bin"))
    assert res.ok and res.verified and res.backend in ("gfal2", "globus-url-copy"), res.report()
    assert res.source_checksum == adler(data)
    assert (tmp_path / "a.bin").read_bytes() == data
    up = copier.copy(str(tmp_path / "a.bin"), gridftp.url("rt/up/b.bin"))
    assert up.ok and up.verified, up.report()
    assert (gridftp.data / "rt/up/b.bin").read_bytes() == data
    assert not [p for p in (gridftp.data / "rt/up").iterdir() if ".part" in p.name]


def test_agrees_with_globus_url_copy(copier, gridftp, pki, proxy, tmp_path):
    require(shutil.which("globus-url-copy") is not None, "globus-url-copy not installed")
    data = os.urandom(3_000_001)
    gridftp.put_file("guc/c.bin", data)
    assert copier.copy(gridftp.url("guc/c.bin"), str(tmp_path / "ours.bin")).ok
    env = {**os.environ, **pki.client_env(proxy)}
    subprocess.run(["globus-url-copy", gridftp.url("guc/c.bin"), (tmp_path / "theirs.bin").as_uri()],
                   env=env, check=True, timeout=60)
    assert (tmp_path / "ours.bin").read_bytes() == (tmp_path / "theirs.bin").read_bytes() == data


def test_parallel_files(copier, gridftp, tmp_path):
    jobs = []
    for i in range(6):
        gridftp.put_file(f"par/f{i}", os.urandom(500_000 + i))
        jobs.append(CopyJob(gridftp.url(f"par/f{i}"), str(tmp_path / f"f{i}")))
    bulk = copier.copy_many(jobs)
    assert bulk.ok, bulk.report()
    for i in range(6):
        assert (tmp_path / f"f{i}").read_bytes() == (gridftp.data / f"par/f{i}").read_bytes()


def _globus_copier(pki, proxy, streams: int = 1) -> Copier:
    require(available(), "python3-gfal2 not importable")
    require(shutil.which("globus-url-copy") is not None, "globus-url-copy not installed")
    creds = Credentials(proxy=proxy, ca_dir=str(pki.cert_dir))
    return Copier(creds, CopyOptions(progress=False, retry=RetryPolicy(attempts=2, initial=0.1)),
                  Backends(creds, {"gsiftp": "globus"}, gfal_streams=streams))


def test_resumes_a_partial_download(pki, proxy, gridftp, tmp_path):
    data = os.urandom(6_000_001)
    gridftp.put_file("resume/r.bin", data)
    (tmp_path / ".r.bin.part").write_bytes(data[:2_500_003])
    res = _globus_copier(pki, proxy).copy(gridftp.url("resume/r.bin"), str(tmp_path / "r.bin"))
    assert res.ok and res.verified and res.resumed_from == 2_500_003, res.report()
    assert (tmp_path / "r.bin").read_bytes() == data
    assert not (tmp_path / ".r.bin.part").exists()


def test_several_streams_verified(pki, proxy, gridftp, tmp_path):
    data = os.urandom(24 << 20)
    gridftp.put_file("streams/s.bin", data)
    res = _globus_copier(pki, proxy, streams=4).copy(gridftp.url("streams/s.bin"),
                                                     str(tmp_path / "s.bin"))
    assert res.ok and res.verified and res.source_checksum == adler(data), res.report()
    assert (tmp_path / "s.bin").read_bytes() == data


def test_corrupted_source_byte_is_detected(copier, gridftp, tmp_path):
    data = bytearray(os.urandom(1_000_000))
    expected = f"adler32:{adler(bytes(data))}"  # as recorded by the catalog at ingest
    data[123_456] ^= 0x01
    gridftp.put_file("bad/x.bin", bytes(data))
    res = copier.copy(gridftp.url("bad/x.bin"), str(tmp_path / "x.bin"), expected=expected)
    assert not res.ok and res.error_type == "ChecksumMismatch" and res.exit_code == 4
    assert res.attempts == 4 and "checksum mismatch" in res.error
    assert not (tmp_path / "x.bin").exists() and not list(tmp_path.iterdir())


def test_unreachable_port_bounded_retries(pki, proxy, tmp_path):
    require(available(), "python3-gfal2 not importable")
    sleeps: list[float] = []
    c = Copier(Credentials(proxy=proxy, ca_dir=str(pki.cert_dir)),
               CopyOptions(progress=False, retry=RetryPolicy(attempts=3, initial=0.1, jitter=0)),
               sleep=sleeps.append)
    started = time.monotonic()
    res = c.copy(f"gsiftp://localhost:{free_port()}/tmp/none", str(tmp_path / "n"))
    assert not res.ok and res.attempts == 3 and sleeps == [0.1, 0.2]
    assert "connection refused" in res.error and res.exit_code == 9
    assert time.monotonic() - started < 30


def test_missing_file_fails_at_once(copier, gridftp, tmp_path):
    res = copier.copy(gridftp.url("does/not/exist"), str(tmp_path / "n"))
    assert not res.ok and res.exit_code == 7 and res.attempts == 1


@pytest.mark.slow
def test_server_killed_mid_transfer_then_restarted(copier, gridftp, tmp_path):
    size = 256 << 20
    gridftp.put_file("kill/big.bin", os.urandom(1 << 20) * (size >> 20))
    dest = tmp_path / "big.bin"
    part = tmp_path / ".big.bin.part"
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("res", copier.copy(gridftp.url("kill/big.bin"), str(dest))))
    t.start()
    deadline = time.monotonic() + 60
    killed_at = -1
    while time.monotonic() < deadline and killed_at <= 8 << 20:
        try:
            killed_at = part.stat().st_size
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    gridftp.stop()  # SIGKILL to the server and its session processes
    time.sleep(0.2)
    gridftp.start()
    t.join(120)
    res = box["res"]
    assert 0 < killed_at < size, "the kill did not land mid-transfer"
    assert res.ok and res.verified and res.attempts >= 2, res.report()
    if res.backend == "globus-url-copy":  # resumes; gfal2's streamed copy starts again
        assert res.resumed_from > 0, res.report()
    assert dest.stat().st_size == size
