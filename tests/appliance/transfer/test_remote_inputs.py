"""``appliance.inputs.remote``: recipe inputs fetched over gsiftp into the content store."""

from __future__ import annotations

import hashlib
import os

import pytest

from appliance.errors import ChecksumMismatch, InputError
from appliance.inputs.remote import remote_resolvers
from appliance.store import ContentStore
from appliance.transfer.gfal import available
from tests.appliance.dataclient.helpers import make_user_env
from tests.prereq import require


@pytest.fixture()
def resolver(tmp_path, monkeypatch, pki, gridftp):
    require(available(), "python3-gfal2 not importable")
    env = make_user_env(tmp_path, monkeypatch, pki)
    [r] = remote_resolvers({"passphrase_file": str(env.passfile), "retries": 2,
                            "lta_url": f"gsiftp://localhost:{gridftp.port}{gridftp.data}"})
    return r


def test_gsiftp_and_lta_inputs_land_in_store(resolver, gridftp, tmp_path):
    data = os.urandom(1_500_000)
    gridftp.put_file("inputs/obs.fits", data)
    store = ContentStore(tmp_path / "store")
    sha = hashlib.sha256(data).hexdigest()
    got = resolver.fetch(gridftp.url("inputs/obs.fits"), store, expected_sha256=sha)
    assert got.sha256 == sha and got.size == len(data) and got.path.read_bytes() == data
    got2 = resolver.fetch("lta://inputs/obs.fits", store)
    assert got2.sha256 == sha and store.has(sha)
    assert not [p for p in (store.root / "tmp").iterdir()], "temporary files left in the store"


def test_wrong_lock_checksum_is_refused(resolver, gridftp, tmp_path):
    gridftp.put_file("inputs/x.bin", b"some bytes")
    store = ContentStore(tmp_path / "store")
    with pytest.raises(ChecksumMismatch) as err:
        resolver.fetch(gridftp.url("inputs/x.bin"), store, expected_sha256="0" * 64)
    assert "inputs/x.bin" in str(err.value)
    assert not store.has("0" * 64)


def test_lta_without_configuration_is_a_clear_error(tmp_path, monkeypatch, pki):
    make_user_env(tmp_path, monkeypatch, pki)
    [r] = remote_resolvers({})
    with pytest.raises(InputError, match="lta_url"):
        r.url_of("lta://obs/x.fits")
    assert remote_resolvers({"lta_url": "davs://h:1"})[0].url_of("lta:///obs/x.fits") == "davs://h:1/obs/x.fits"
