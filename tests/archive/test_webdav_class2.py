"""WebDAV as clients expect it (RFC 4918, class 2): recursive DELETE, COPY, MOVE with Overwrite,
PROPPATCH dead properties, PROPFIND bodies, LOCK/UNLOCK and the If header, a token as the Basic
password; then Debian's litmus (basic, copymove, props, locks, http) against a real server."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time

import jwt
import pytest
import requests

from archive.davlocks import parse_if
from archive.server import serve_in_thread
from tests.archive.conftest import server_config, tls_session
from tests.prereq import require

LOCKINFO = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
            b'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>me</D:owner></D:lockinfo>')
SHARED = LOCKINFO.replace(b"<D:exclusive/>", b"<D:shared/>")


@pytest.fixture(scope="module")
def dav(lta, pki, mint):
    s = tls_session(pki, mint(), lta.url + "/c2")
    s.request("MKCOL", s.base)
    return s


def tree(dav, top: str) -> None:
    assert dav.request("MKCOL", dav.base + top).status_code == 201
    assert dav.put(dav.base + top + "/a.bin", data=b"aaa").status_code == 201
    assert dav.request("MKCOL", dav.base + top + "/sub").status_code == 201
    assert dav.put(dav.base + top + "/sub/b.bin", data=b"bbbb").status_code == 201


def test_delete_collection_is_recursive(dav, lta):
    tree(dav, "/del")
    assert dav.delete(dav.base + "/del/").status_code == 204
    cat = lta.archive.catalog
    assert not cat.get_dir("/c2/del") and not cat.get_dir("/c2/del/sub")
    assert not cat.get_file("/c2/del/a.bin") and not cat.get_file("/c2/del/sub/b.bin")
    assert dav.delete(dav.base + "/del").status_code == 404


def test_copy_file_and_collection_depths(dav, lta):
    tree(dav, "/cp")
    r = dav.request("COPY", dav.base + "/cp/a.bin", headers={"Destination": dav.base + "/cp/a2"})
    assert r.status_code == 201
    assert dav.get(dav.base + "/cp/a2").content == b"aaa"
    src, dst = lta.archive.catalog.get_file("/c2/cp/a.bin"), lta.archive.catalog.get_file("/c2/cp/a2")
    assert src.file_id != dst.file_id and src.adler32 == dst.adler32
    r = dav.request("COPY", dav.base + "/cp/a.bin",
                    headers={"Destination": dav.base + "/cp/a2", "Overwrite": "F"})
    assert r.status_code == 412
    r = dav.request("COPY", dav.base + "/cp/sub/b.bin", headers={"Destination": dav.base + "/cp/a2"})
    assert r.status_code == 204 and dav.get(dav.base + "/cp/a2").content == b"bbbb"
    r = dav.request("COPY", dav.base + "/cp", headers={"Destination": dav.base + "/cpdeep"})
    assert r.status_code == 201
    assert dav.get(dav.base + "/cpdeep/sub/b.bin").content == b"bbbb"
    r = dav.request("COPY", dav.base + "/cp",
                    headers={"Destination": dav.base + "/cpshallow", "Depth": "0"})
    assert r.status_code == 201
    assert lta.archive.catalog.get_dir("/c2/cpshallow")
    assert lta.archive.catalog.list_dir("/c2/cpshallow") == ([], [])
    r = dav.request("COPY", dav.base + "/cp/a.bin", headers={"Destination": dav.base + "/no/x"})
    assert r.status_code == 409  # no parent collection
    r = dav.request("COPY", dav.base + "/cp/a.bin",
                    headers={"Destination": "https://other.host/c2/x"})
    assert r.status_code == 502 and not lta.archive.catalog.get_file("/c2/x")


def test_copy_of_a_tape_only_file_is_refused(dav, lta):
    assert dav.put(dav.base + "/tape.bin", data=b"t" * 100).status_code == 201
    f = lta.archive.catalog.get_file("/c2/tape.bin")
    lta.archive.catalog.remove_disk_replica(f.file_id)  # as after eviction
    r = dav.request("COPY", dav.base + "/tape.bin", headers={"Destination": dav.base + "/t2"})
    assert r.status_code == 423 and "stage it first" in r.json()["detail"]
    assert lta.archive.catalog.get_file("/c2/t2") is None


def test_move_overwrite(dav, lta):
    for name in ("m1", "m2", "m3"):
        assert dav.put(dav.base + f"/{name}", data=name.encode()).status_code == 201
    r = dav.request("MOVE", dav.base + "/m1", headers={"Destination": dav.base + "/m2",
                                                       "Overwrite": "F"})
    assert r.status_code == 412 and dav.get(dav.base + "/m1").content == b"m1"
    r = dav.request("MOVE", dav.base + "/m1", headers={"Destination": dav.base + "/m2",
                                                       "Overwrite": "T"})
    assert r.status_code == 204 and dav.get(dav.base + "/m2").content == b"m1"
    tree(dav, "/mcoll")
    r = dav.request("MOVE", dav.base + "/m3", headers={"Destination": dav.base + "/mcoll"})
    assert r.status_code == 204 and dav.get(dav.base + "/mcoll").content == b"m3"
    assert lta.archive.catalog.get_file("/c2/mcoll/a.bin") is None


def propfind(dav, path, body: bytes, depth="0"):
    return dav.request("PROPFIND", dav.base + path, data=body, headers={"Depth": depth})


def test_proppatch_and_propfind_bodies(dav, lta):
    assert dav.put(dav.base + "/p.bin", data=b"p").status_code == 201
    patch = (b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z">'
             b'<D:set><D:prop><Z:colour>blue</Z:colour><Z:n>1</Z:n></D:prop></D:set>'
             b'<D:remove><D:prop><Z:n/></D:prop></D:remove></D:propertyupdate>')
    r = dav.request("PROPPATCH", dav.base + "/p.bin", data=patch)
    assert r.status_code == 207 and "200 OK" in r.text
    assert set(lta.archive.catalog.get_props("/c2/p.bin")) == {("urn:z", "colour")}
    r = propfind(dav, "/p.bin", b'<D:propfind xmlns:D="DAV:" xmlns:Z="urn:z"><D:prop>'
                               b'<Z:colour/><Z:missing/><D:getcontentlength/></D:prop></D:propfind>')
    assert r.status_code == 207
    ok, missing = r.text.split("404 Not Found")[0], r.text
    assert "blue" in ok and "<D:getcontentlength>1<" in ok and "displayname" not in r.text
    assert re.search(r"missing[^>]*/>.*404 Not Found", missing)
    r = propfind(dav, "/p.bin", b'<D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>')
    assert "colour" in r.text and "blue" not in r.text and "<D:getetag/>" in r.text
    r = propfind(dav, "/p.bin", b'<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>')
    assert "blue" in r.text and "<D:getetag>" in r.text
    assert propfind(dav, "/p.bin", b"<D:propfind xmlns:D='DAV:'><D:prop>").status_code == 400
    # a protected live property fails the whole PROPPATCH: 403 for it, 424 for the rest
    bad = (b'<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop>'
           b'<D:getetag>x</D:getetag><Z:colour>red</Z:colour></D:prop></D:set></D:propertyupdate>')
    r = dav.request("PROPPATCH", dav.base + "/p.bin", data=bad)
    assert r.status_code == 207 and "403 Forbidden" in r.text and "424 Failed Dependency" in r.text
    assert "blue" in lta.archive.catalog.get_props("/c2/p.bin")[("urn:z", "colour")]
    # dead properties move, copy and vanish with their resource
    dav.request("MOVE", dav.base + "/p.bin", headers={"Destination": dav.base + "/p2.bin"})
    assert lta.archive.catalog.get_props("/c2/p2.bin") and not lta.archive.catalog.get_props("/c2/p.bin")
    dav.request("COPY", dav.base + "/p2.bin", headers={"Destination": dav.base + "/p3.bin"})
    assert lta.archive.catalog.get_props("/c2/p3.bin")
    dav.delete(dav.base + "/p2.bin")
    assert not lta.archive.catalog.get_props("/c2/p2.bin")
    assert propfind(dav, "/", b"", depth="infinity").status_code == 403


def lock(dav, path, body=LOCKINFO, **headers):
    return dav.request("LOCK", dav.base + path, data=body, headers={"Timeout": "Second-60", **headers})


def test_lock_unlock_and_if_header(dav, lta):
    assert dav.put(dav.base + "/l.bin", data=b"l").status_code == 201
    r = lock(dav, "/l.bin")
    assert r.status_code == 200
    token = r.headers["Lock-Token"].strip("<>")
    assert token.startswith("opaquelocktoken:") and "<D:exclusive/>" in r.text
    assert dav.put(dav.base + "/l.bin", data=b"x").status_code == 423
    assert dav.delete(dav.base + "/l.bin").status_code == 423
    assert lock(dav, "/l.bin", SHARED).status_code == 423
    assert dav.put(dav.base + "/l.bin", data=b"y", headers={"If": f"(<{token}>)"}).status_code == 204
    etag = dav.head(dav.base + "/l.bin").headers["ETag"]
    If = f"(<{token}> [{etag}])"
    assert dav.put(dav.base + "/l.bin", data=b"z", headers={"If": If}).status_code == 204
    assert dav.put(dav.base + "/l.bin", data=b"z",
                   headers={"If": f"(<{token}> [\"bad\"])"}).status_code == 412
    r = propfind(dav, "/l.bin", b'<D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/>'
                                b'<D:supportedlock/></D:prop></D:propfind>')
    assert token in r.text and "<D:shared/>" in r.text
    r = lock(dav, "/l.bin", b"", If=f"(<{token}>)", Timeout="Second-120")  # refresh
    assert r.status_code == 200 and "Second-120" in r.text
    assert dav.request("UNLOCK", dav.base + "/l.bin",
                       headers={"Lock-Token": "<opaquelocktoken:nope>"}).status_code == 409
    assert dav.request("UNLOCK", dav.base + "/l.bin",
                       headers={"Lock-Token": f"<{token}>"}).status_code == 204
    assert dav.put(dav.base + "/l.bin", data=b"free").status_code == 204


def test_shared_locks_collection_lock_and_unmapped_url(dav, lta):
    assert dav.request("MKCOL", dav.base + "/lc").status_code == 201
    t1 = lock(dav, "/lc", SHARED).headers["Lock-Token"]
    t2 = lock(dav, "/lc", SHARED).headers["Lock-Token"]
    assert t1 != t2
    assert dav.put(dav.base + "/lc/new", data=b"n").status_code == 423  # depth infinity
    assert dav.put(dav.base + "/lc/new", data=b"n", headers={"If": f"({t2})"}).status_code == 201
    assert dav.delete(dav.base + "/lc").status_code == 423
    for t in (t1, t2):
        dav.request("UNLOCK", dav.base + "/lc", headers={"Lock-Token": t})
    r = lock(dav, "/lc/unmapped")  # RFC 4918 7.3: an empty resource is created
    assert r.status_code == 201
    assert lta.archive.catalog.get_file("/c2/lc/unmapped").size == 0
    assert lock(dav, "/nowhere/x").status_code == 409
    assert "2" in dav.options(dav.base + "/").headers["DAV"]


def test_if_header_parser():
    lists = parse_if('<http://h/a> (<opaquelocktoken:1> ["e"]) (Not <DAV:no-lock>)')
    assert lists == [("http://h/a", [(False, "token", "opaquelocktoken:1"), (False, "etag", '"e"')]),
                     ("http://h/a", [(True, "token", "DAV:no-lock")])]
    assert parse_if("(<a>") is None and parse_if("garbage") is None


def test_token_as_basic_password(lta, pki, mint):
    basic = base64.b64encode(f"token:{mint()}".encode()).decode()
    r = requests.request("PROPFIND", lta.url + "/", headers={"Authorization": f"Basic {basic}",
                                                             "Depth": "0"}, verify=str(pki.ca_cert))
    assert r.status_code == 207
    bad = base64.b64encode(b"token:not-a-token").decode()
    r = requests.put(lta.url + "/c2/b", data=b"x", headers={"Authorization": f"Basic {bad}"},
                     verify=str(pki.ca_cert))
    assert r.status_code == 401 and "Basic" in r.headers["WWW-Authenticate"]


# -- litmus ---------------------------------------------------------------------------------------
SUITES = ("basic", "copymove", "props", "locks", "http")
SECRET = "litmus-test-secret-0123456789abcdef"


def test_litmus_passes_every_suite(tmp_path, pki, token_key):
    """litmus (neon) sends credentials as Basic only, and refuses passwords of 256 characters
    or more: a short HS256 token (about 200 characters) goes in as the Basic password. neon
    does not verify the server certificate in litmus (it trusts any), so no CA setup is needed."""
    require(shutil.which("litmus") is not None, "litmus not installed (apt-get install litmus)")
    cfg = server_config(tmp_path / "root", pki, token_key[1],
                        auth={"token_keys": [{"issuer": "l", "algorithm": "HS256", "secret": SECRET}],
                              "token_audience": ["lta"]})
    srv = serve_in_thread(cfg)
    try:
        token = jwt.encode({"iss": "l", "sub": "litmus", "aud": "lta", "exp": int(time.time()) + 3600,
                            "scope": "storage.read:/ storage.modify:/"}, SECRET, algorithm="HS256")
        assert len(token) < 256
        s = tls_session(pki, token)
        results = {}
        for suite in SUITES:
            assert s.request("MKCOL", f"{srv.url}/{suite}/").status_code == 201
            p = subprocess.run(["litmus", f"{srv.url}/{suite}/", "token", token],
                               env={"TESTS": suite, "PATH": "/usr/bin:/bin"},
                               cwd=tmp_path,  # litmus writes debug.log and child.log in its cwd
                               capture_output=True, text=True, timeout=300)
            m = re.search(rf"summary for `{suite}': of (\d+) tests run: (\d+) passed, (\d+) failed",
                          p.stdout)
            assert m, p.stdout + p.stderr
            results[suite] = tuple(int(x) for x in m.groups())
            assert results[suite][2] == 0 and results[suite][0] == results[suite][1], p.stdout
        assert results["locks"][0] >= 40 and results["props"][0] >= 30, results
    finally:
        srv.stop()
