"""The real client: Debian's gfal2 2.21 (gfal-* tools and the python3-gfal2 API) over davs://
against our server with the test CA, bearer tokens and RFC 3820 proxies."""

from __future__ import annotations

import os

import pytest

from tests.archive.conftest import wait_for


def davs(lta, path: str) -> str:
    return lta.url.replace("https://", "davs://") + path


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    p = tmp_path_factory.mktemp("payload") / "obs.dat"
    p.write_bytes(os.urandom(3_000_123))
    return p


def test_copy_up_ls_stat_sum_down(lta, gfal, mint, payload, tmp_path):
    tok = mint()
    url = davs(lta, "/gfal/run1/obs.dat")
    gfal("gfal-copy", "-p", "-K", "ADLER32", f"file://{payload}", url, token=tok)
    entry = lta.archive.catalog.get_file("/gfal/run1/obs.dat")
    assert entry and entry.size == payload.stat().st_size
    out = gfal("gfal-ls", "-l", davs(lta, "/gfal/run1"), token=tok).stdout
    assert "obs.dat" in out and str(entry.size) in out
    out = gfal("gfal-stat", url, token=tok).stdout
    assert f"Size: {entry.size}" in out and "regular file" in out
    out = gfal("gfal-sum", url, "ADLER32", token=tok).stdout
    assert out.split()[-1] == entry.adler32
    back = tmp_path / "back.dat"
    gfal("gfal-copy", "-K", "ADLER32", url, f"file://{back}", token=tok)
    assert back.read_bytes() == payload.read_bytes()


def test_mkdir_rm(lta, gfal, mint):
    tok = mint()
    gfal("gfal-mkdir", davs(lta, "/gfal/newdir"), token=tok)
    assert lta.archive.catalog.get_dir("/gfal/newdir")
    gfal("gfal-mkdir", "-p", davs(lta, "/gfal/deep/a/b"), token=tok)
    assert lta.archive.catalog.get_dir("/gfal/deep/a/b")
    p = gfal("gfal-mkdir", davs(lta, "/gfal/newdir"), token=tok, check=False)
    assert p.returncode != 0  # exists
    gfal("gfal-rm", "-r", davs(lta, "/gfal/deep"), token=tok)
    assert not lta.archive.catalog.get_dir("/gfal/deep")


def test_bringonline_tape_only_file_and_xattr(lta, gfal, mint, payload):
    tok = mint()
    url = davs(lta, "/gfal/tape/obs.dat")
    gfal("gfal-copy", "-p", f"file://{payload}", url, token=tok)
    a = lta.archive
    wait_for(lambda: a.locality("/gfal/tape/obs.dat") == "DISK_AND_TAPE", what="migration")
    assert gfal("gfal-xattr", url, "user.status", token=tok).stdout.strip() == \
        "ONLINE_AND_NEARLINE"
    assert a.evict_path("/gfal/tape/obs.dat")
    assert gfal("gfal-xattr", url, "user.status", token=tok).stdout.strip() == "NEARLINE"
    # a plain download of a tape-only file is refused with a clear message
    # never file:///dev/null: gfal2 replaces/removes the destination and would delete /dev/null
    p = gfal("gfal-copy", "-f", url, f"file://{payload}.refused", token=tok, check=False)
    assert p.returncode != 0
    out = gfal("gfal-bringonline", "--polling-timeout", "60", url, token=tok).stdout
    assert "READY" in out
    assert gfal("gfal-xattr", url, "user.status", token=tok).stdout.strip() == \
        "ONLINE_AND_NEARLINE"


def test_proxy_certificate_is_accepted(lta, gfal, pki, payload, tmp_path):
    proxy = pki.make_proxy(tmp_path / "x509up")
    url = davs(lta, "/gfal/proxy/obs.dat")
    gfal("gfal-copy", "-p", f"file://{payload}", url, proxy=proxy)
    f = lta.archive.catalog.get_file("/gfal/proxy/obs.dat")
    assert f and f.owner == "alice"  # the DN was mapped through the grid-mapfile
    assert "obs.dat" in gfal("gfal-ls", davs(lta, "/gfal/proxy"), proxy=proxy).stdout


def test_grid_proxy_init_proxy_is_accepted(lta, gfal, pki, tmp_path):
    import subprocess

    from tests.prereq import require

    require(subprocess.run(["which", "grid-proxy-init"], capture_output=True).returncode == 0,
            "globus-proxy-utils not installed")
    out = tmp_path / "gpi-proxy"
    subprocess.run(["grid-proxy-init", "-cert", str(pki.user_cert), "-key", str(pki.user_key),
                    "-out", str(out), "-valid", "1:00"],
                   check=True, capture_output=True,
                   env={**os.environ, "X509_CERT_DIR": str(pki.cert_dir)})
    gfal("gfal-ls", davs(lta, "/"), proxy=out)


def test_anonymous_and_unmapped_refused(lta, gfal, pki, payload, tmp_path):
    url = davs(lta, "/gfal/anon/obs.dat")
    p = gfal("gfal-copy", "-p", f"file://{payload}", url, check=False)
    assert p.returncode != 0 and lta.archive.catalog.get_file("/gfal/anon/obs.dat") is None
    cert, key = pki.issue_user("/DC=test/CN=Stranger", tmp_path)
    proxy = pki.make_proxy(tmp_path / "stranger-proxy", user_cert=cert, user_key=key)
    p = gfal("gfal-ls", davs(lta, "/gfal"), proxy=proxy, check=False)
    assert p.returncode != 0


def test_python_gfal2_api(lta, mint, payload, pki, monkeypatch):
    gfal2 = pytest.importorskip("gfal2")
    monkeypatch.setenv("X509_CERT_DIR", str(pki.cert_dir))
    monkeypatch.setenv("BEARER_TOKEN", mint())
    ctx = gfal2.creat_context()
    url = davs(lta, "/gfal/api/obs.dat")
    ctx.mkdir_rec(davs(lta, "/gfal/api"), 0o755)
    params = ctx.transfer_parameters()
    params.overwrite = True
    params.set_checksum(gfal2.checksum_mode.both, "ADLER32", "")
    ctx.filecopy(params, f"file://{payload}", url)
    st = ctx.stat(url)
    assert st.st_size == payload.stat().st_size
    entry = lta.archive.catalog.get_file("/gfal/api/obs.dat")
    assert ctx.checksum(url, "ADLER32") == entry.adler32
    wait_for(lambda: lta.archive.locality("/gfal/api/obs.dat") == "DISK_AND_TAPE")
    assert lta.archive.evict_path("/gfal/api/obs.dat")
    assert ctx.getxattr(url, "user.status") == "NEARLINE"
    status, token = ctx.bring_online(url, 3600, 60, True)
    wait_for(lambda: ctx.bring_online_poll(url, token) == 1, timeout=30, what="bring_online")
    assert ctx.getxattr(url, "user.status") == "ONLINE_AND_NEARLINE"
    ctx.release(url, token)
    assert sorted(ctx.listdir(davs(lta, "/gfal/api"))) == ["obs.dat"]
