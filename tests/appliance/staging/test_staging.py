"""StagingClient and the staging-aware bulk copy against the project's archive server (davs).

Files are ingested, written to (simulated) tape and dropped from the disk cache, so they must be
staged through the WLCG Tape REST API before the copy; the copy's checksum is the archive's.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from appliance.staging import StagingClient, StagingFailed
from appliance.staging.bulk import StagingCopier
from appliance.staging.errors import StagingError
from appliance.store import ContentStore
from appliance.transfer import Copier, CopyOptions, Credentials
from appliance.transfer.engine import CopyJob
from appliance.transfer.gfal import available
from appliance.transfer.retry import RetryPolicy
from appliance.transfer.select import Backends


@pytest.fixture()
def creds(pki, proxy):
    return Credentials(proxy=proxy, ca_dir=str(pki.cert_dir))


def test_client_api(archive, creds, tmp_path):
    archive.put("/st/api/a.bin", os.urandom(50_000), tmp_path)
    archive.put("/st/api/b.bin", os.urandom(50_000), tmp_path)
    archive.on_tape("/st/api/a.bin")
    client = StagingClient(archive.url + "/st/api/a.bin", creds)
    assert client.endpoint.endswith("/api/v1") and client.sitename == "TEST-LTA"
    info = {i.path: i for i in client.archiveinfo(["/st/api/a.bin", "/st/api/b.bin", "/st/none"])}
    assert info["/st/api/a.bin"].needs_stage
    assert info["/st/api/b.bin"].online
    assert info["/st/none"].error and not info["/st/none"].online
    rid = client.stage(["/st/api/a.bin", "/st/api/b.bin"], lifetime="PT1H")
    seen: list[str] = []
    status = client.wait(rid, timeout=60, on_online=seen.append)
    assert status.ok and sorted(seen) == ["/st/api/a.bin", "/st/api/b.bin"]
    assert status.to_json()["id"] == rid and "2 completed" in status.report()
    with pytest.raises(StagingError):
        client.cancel(rid, ["/st/not-in-request"])
    client.release(rid, ["/st/api/a.bin"])
    client.delete(rid)


def test_missing_file_fails_staging(archive, creds):
    client = StagingClient(archive.url, creds)
    rid = client.stage(["/st/does-not-exist.bin"])
    with pytest.raises(StagingFailed) as err:
        client.wait(rid, timeout=60)
    assert "/st/does-not-exist.bin" in err.value.paths


@pytest.mark.parametrize("backend", ["http", "gfal2"])
def test_bulk_copy_stages_what_is_on_tape(archive, creds, tmp_path, backend):
    if backend == "gfal2" and not available():
        pytest.skip("python3-gfal2 not importable")
    blobs = {f"/st/bulk-{backend}/f{i}.bin": os.urandom(200_000 + i) for i in range(4)}
    for path, data in blobs.items():
        archive.put(path, data, tmp_path)
    for path in list(blobs)[:2]:
        archive.on_tape(path)
    copier = Copier(creds, CopyOptions(progress=False, parallel=3,
                                       retry=RetryPolicy(attempts=3, initial=0.2)),
                    Backends(creds, {"*": backend}))
    jobs = [CopyJob(archive.url + p, str(tmp_path / "out" / p.rsplit("/", 1)[1])) for p in blobs]
    released: list[str] = []
    stager = StagingCopier(copier, creds, timeout=120)
    orig = stager._release
    stager._release = lambda c, rid, p: (released.append(p), orig(c, rid, p))  # type: ignore[method-assign]
    result = stager.copy(jobs)
    assert result.ok, result.report()
    assert any("staged 2 file(s)" in n for n in result.notes)
    assert sorted(released) == sorted(list(blobs)[:2])
    for path, data in blobs.items():
        assert (tmp_path / "out" / path.rsplit("/", 1)[1]).read_bytes() == data
    assert all(r.verified for r in result.results)


def test_lta_input_resolver_stages_into_store(archive, pki, tmp_path, monkeypatch):
    from appliance.inputs.remote import remote_resolvers
    from tests.appliance.dataclient.helpers import make_user_env

    env = make_user_env(tmp_path, monkeypatch, pki, encrypted=False)
    data = os.urandom(300_000)
    archive.put("/st/inputs/obs.fits", data, tmp_path)
    archive.on_tape("/st/inputs/obs.fits")
    [resolver] = remote_resolvers({"lta_url": archive.url, "ca_dir": str(pki.cert_dir),
                                   "backend": "http"})
    store = ContentStore(tmp_path / "store")
    got = resolver.fetch("lta://st/inputs/obs.fits", store,
                         expected_sha256=hashlib.sha256(data).hexdigest())
    assert got.path.read_bytes() == data
    assert env.proxy.exists(), "the resolver made a proxy from the user certificate"
