"""Plain HTTP(S) backend (requests) against a real nginx over TLS with the test CA.

nginx serves Range and the WebDAV write methods but no Digest: so downloads verify against a
checksum the caller knows, and uploads without ``checksum=None`` are refused cleanly. Resume:
a partial ``.part`` file continues with ``Range``, also after the server was killed mid-transfer.
"""

from __future__ import annotations

import os
import threading
import time
import zlib

import pytest

from appliance.transfer import Copier, CopyOptions, Credentials
from appliance.transfer.http import HttpBackend
from appliance.transfer.retry import RetryPolicy
from appliance.transfer.select import Backends


def adler(data: bytes) -> str:
    return f"adler32:{zlib.adler32(data) & 0xFFFFFFFF:08x}"


@pytest.fixture()
def creds(pki):
    return Credentials(ca_dir=str(pki.cert_dir))


def _copier(creds, **kw) -> Copier:
    options = CopyOptions(progress=False, retry=RetryPolicy(attempts=4, initial=0.3), **kw)
    return Copier(creds, options, Backends(creds, prefer={"https": "http"}))


def test_download_with_known_checksum(nginx, creds, tmp_path):
    data = os.urandom(2_000_000)
    (nginx.data / "h1.bin").write_bytes(data)
    res = _copier(creds).copy(nginx.url("h1.bin"), str(tmp_path / "h1.bin"), expected=adler(data))
    assert res.ok and res.verified and res.backend == "http", res.report()
    assert (tmp_path / "h1.bin").read_bytes() == data


def test_no_server_checksum_is_refused_unless_disabled(nginx, creds, tmp_path):
    (nginx.data / "h2.bin").write_bytes(b"data")
    res = _copier(creds).copy(nginx.url("h2.bin"), str(tmp_path / "h2.bin"))
    assert not res.ok and res.error_type == "ChecksumUnavailable" and res.exit_code == 4
    assert not (tmp_path / "h2.bin").exists()
    res = _copier(creds, checksum=None).copy(nginx.url("h2.bin"), str(tmp_path / "h2.bin"))
    assert res.ok and not res.verified and "NOT verified" in res.report()


def test_resume_from_partial_file(nginx, creds, tmp_path):
    data = os.urandom(3_000_000)
    (nginx.data / "h3.bin").write_bytes(data)
    (tmp_path / ".h3.bin.part").write_bytes(data[:1_234_567])
    res = _copier(creds).copy(nginx.url("h3.bin"), str(tmp_path / "h3.bin"), expected=adler(data))
    assert res.ok and res.resumed_from == 1_234_567, res.report()
    assert (tmp_path / "h3.bin").read_bytes() == data


def test_upload_temp_name_then_move(nginx, creds, tmp_path):
    src = tmp_path / "u.bin"
    src.write_bytes(os.urandom(500_000))
    res = _copier(creds).copy(str(src), nginx.url("up/u.bin"))
    assert not res.ok and res.error_type == "ChecksumUnavailable"
    assert not (nginx.data / "up" / "u.bin").exists()
    assert not [p for p in (nginx.data / "up").iterdir()], "temporary upload left behind"
    res = _copier(creds, checksum=None).copy(str(src), nginx.url("up/u.bin"))
    assert res.ok, res.report()
    assert (nginx.data / "up" / "u.bin").read_bytes() == src.read_bytes()


def test_tls_needs_the_right_ca(nginx, tmp_path):
    (nginx.data / "h4.bin").write_bytes(b"x")
    res = _copier(Credentials(), checksum=None).copy(nginx.url("h4.bin"), str(tmp_path / "h4"))
    assert not res.ok and "TLS" in res.error and res.attempts == 1


def test_listing_falls_back_and_stat_works(nginx, creds):
    (nginx.data / "h5.bin").write_bytes(b"12345")
    st = HttpBackend(creds).stat(nginx.url("h5.bin"))
    assert st.size == 5 and not st.is_dir


@pytest.mark.slow
def test_server_killed_mid_download_resumes(nginx, creds, tmp_path):
    data = os.urandom(10 << 20)  # /slow/ is limited to 4 MB/s: about 2.5 s in total
    (nginx.data / "slow").mkdir(exist_ok=True)
    (nginx.data / "slow" / "k.bin").write_bytes(data)
    part = tmp_path / ".k.bin.part"
    box: dict = {}
    c = _copier(creds)
    t = threading.Thread(target=lambda: box.setdefault(
        "res", c.copy(nginx.url("slow/k.bin"), str(tmp_path / "k.bin"), expected=adler(data))))
    t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (part.exists() and part.stat().st_size > 2 << 20):
        time.sleep(0.01)
    nginx.stop()
    time.sleep(0.3)
    nginx.start()
    t.join(60)
    res = box["res"]
    assert res.ok and res.verified and res.attempts >= 2, res.report()
    assert res.resumed_from > 2 << 20, "the second attempt should continue where the first stopped"
    assert (tmp_path / "k.bin").read_bytes() == data


def test_staging_aware_copy_falls_back_without_tape_api(nginx, creds, tmp_path):
    from appliance.staging.bulk import StagingCopier
    from appliance.transfer.engine import CopyJob

    data = os.urandom(100_000)
    (nginx.data / "h6.bin").write_bytes(data)
    bulk = StagingCopier(_copier(creds), creds).copy(
        [CopyJob(nginx.url("h6.bin"), str(tmp_path / "h6.bin"), adler(data))])
    assert bulk.ok and not bulk.notes, bulk.report()
    assert (tmp_path / "h6.bin").read_bytes() == data
