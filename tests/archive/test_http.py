"""Wire details of the HTTP/WebDAV and Tape REST server (with requests and raw sockets)."""

from __future__ import annotations

import base64
import hashlib
import http.client as httpclient
import os
import ssl
import zlib

import pytest
import requests

from tests.archive.conftest import tls_session, wait_for


@pytest.fixture(scope="module")
def http(lta, pki, mint):
    return tls_session(pki, mint(), lta.url)


def test_put_get_range_digest(http):
    data = os.urandom(100_000)
    r = http.put(http.base + "/h/one.bin", data=data)
    assert r.status_code == 201
    r = http.put(http.base + "/h/one.bin", data=data)
    assert r.status_code == 204  # overwrite
    r = http.head(http.base + "/h/one.bin", headers={"Want-Digest": "ADLER32"})
    assert r.headers["Digest"] == f"adler32={zlib.adler32(data):08x}"
    r = http.get(http.base + "/h/one.bin", headers={"Want-Digest": "sha-256"})
    assert r.content == data
    assert r.headers["Digest"] == "sha-256=" + base64.b64encode(hashlib.sha256(data).digest()).decode()
    r = http.get(http.base + "/h/one.bin", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == "bytes 10-19/100000"
    r = http.get(http.base + "/h/one.bin", headers={"Range": "bytes=-5"})
    assert r.content == data[-5:]
    r = http.get(http.base + "/h/one.bin", headers={"Range": "bytes=200000-"})
    assert r.status_code == 416


def test_put_with_wrong_digest_is_refused(http, lta):
    r = http.put(http.base + "/h/bad.bin", data=b"abc", headers={"Digest": "adler32=deadbeef"})
    assert r.status_code == 400 and "digest mismatch" in r.json()["detail"]
    assert lta.archive.catalog.get_file("/h/bad.bin") is None
    good = f"adler32={zlib.adler32(b'abc'):08x}"
    assert http.put(http.base + "/h/good.bin", data=b"abc", headers={"Digest": good}).status_code == 201


def test_chunked_put(http):
    def gen():
        yield b"a" * 1000
        yield b"b" * 1000

    assert http.put(http.base + "/h/chunked", data=gen()).status_code == 201
    assert http.get(http.base + "/h/chunked").content == b"a" * 1000 + b"b" * 1000


def _raw(lta, pki, request: bytes) -> bytes:
    import socket

    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    with socket.create_connection(("127.0.0.1", lta.port)) as s, \
            ctx.wrap_socket(s, server_hostname="localhost") as t:
        t.sendall(request)
        t.settimeout(5)
        out = b""
        try:
            while chunk := t.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out and not out.startswith(b"HTTP/1.1 100"):
                    break
                if out.count(b"\r\n\r\n") >= 2:
                    break
        except TimeoutError:
            pass
        return out


def test_expect_100_continue(lta, pki, mint):
    tok = mint()
    head = (f"PUT /h/expect HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {tok}\r\n"
            "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n").encode()
    import socket

    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    with socket.create_connection(("127.0.0.1", lta.port)) as s, \
            ctx.wrap_socket(s, server_hostname="localhost") as t:
        t.sendall(head)
        t.settimeout(5)
        first = t.recv(1000)
        assert first.startswith(b"HTTP/1.1 100")
        t.sendall(b"hello")
        rest = t.recv(1000)
        assert b"201" in rest.split(b"\r\n")[0] or b"201" in first + rest
    # refused before the body: no 100, a 401
    out = _raw(lta, pki, b"PUT /h/expect2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
                         b"Expect: 100-continue\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 401")


def test_path_traversal_refused(lta, pki, http):
    for raw in (b"/h/../etc/passwd", b"/h/%2e%2e/etc/passwd", b"/%2E%2E/x", b"/h/./x",
                b"/h/a%00b"):
        out = _raw(lta, pki, b"GET " + raw + b" HTTP/1.1\r\nHost: localhost\r\n"
                   b"Connection: close\r\n\r\n")
        assert out.split(b"\r\n")[0].split()[1] == b"400", (raw, out[:200])
    r = http.put(http.base + "/h/%2e%2e/evil", data=b"x")
    assert r.status_code == 400
    # double encoding is refused too (docs/ARCHIVE.md, "Names"): the next client would decode it again
    r = http.put(http.base + "/h/%252e%252e", data=b"x")
    assert r.status_code == 400
    assert lta.archive.catalog.get_file("/h/%2e%2e") is None


def test_macaroon_copy_options(http):
    r = http.post(http.base + "/h/one.bin", data=b"{}",
                  headers={"Content-Type": "application/macaroon-request"})
    assert 400 <= r.status_code < 500
    # a pull third-party copy (Source header) stays 501: gfal2 falls back to streaming
    r = http.request("COPY", http.base + "/h/one.bin",
                     headers={"Source": "https://elsewhere.test/x"})
    assert r.status_code == 501
    assert "PROPFIND" in http.options(http.base + "/").headers["Allow"]


def test_mkcol_propfind_move_delete(http, lta):
    assert http.request("MKCOL", http.base + "/h/col").status_code == 201
    assert http.request("MKCOL", http.base + "/h/col").status_code == 405
    assert http.request("MKCOL", http.base + "/h/nope/deeper").status_code == 409
    http.put(http.base + "/h/col/f1", data=b"1")
    r = http.request("PROPFIND", http.base + "/h/col", headers={"Depth": "1"})
    assert r.status_code == 207
    body = r.text
    assert body.index("<D:collection/>") < body.index("f1")
    assert body.count("HTTP/1.1 200 OK") == 2
    r = http.request("PROPFIND", http.base + "/h/col/", headers={"Depth": "0"})
    assert r.status_code == 207 and "f1" not in r.text
    r = http.request("MOVE", http.base + "/h/col/f1",
                     headers={"Destination": http.base + "/h/col/f2"})
    assert r.status_code == 201
    assert lta.archive.catalog.get_file("/h/col/f2")
    http.put(http.base + "/h/col/sub/f3", data=b"3")
    assert http.delete(http.base + "/h/col").status_code == 204  # recursive (RFC 4918 9.6.1)
    assert http.get(http.base + "/h/col/f2").status_code == 404
    assert lta.archive.catalog.get_file("/h/col/sub/f3") is None
    assert lta.archive.catalog.get_dir("/h/col/sub") is None


def test_tape_only_get_is_423_with_advice(http, lta):
    http.put(http.base + "/h/tape.bin", data=b"t" * 1000)
    wait_for(lambda: lta.archive.locality("/h/tape.bin") == "DISK_AND_TAPE")
    assert lta.archive.evict_path("/h/tape.bin")
    r = http.get(http.base + "/h/tape.bin")
    assert r.status_code == 423 and "stage it first" in r.json()["detail"]
    assert r.headers["Content-Type"] == "application/problem+json"


def test_tape_rest_flow(http, lta):
    base = http.get(http.base + "/.well-known/wlcg-tape-rest-api/").json()
    assert base["sitename"] == "TEST-LTA"
    api = base["endpoints"][0]["uri"]
    assert api.startswith("https://") and base["endpoints"][0]["version"] == "v1"
    for i in range(3):
        http.put(http.base + f"/h/rest/{i}", data=os.urandom(5000))
    for i in range(3):
        wait_for(lambda i=i: lta.archive.locality(f"/h/rest/{i}") == "DISK_AND_TAPE")
    for i in (0, 1):
        assert lta.archive.evict_path(f"/h/rest/{i}")
    r = http.post(api + "/stage/", json={"files": [
        {"path": "/h/rest/0", "diskLifetime": "PT1H", "targetedMetadata": {"x": {"y": 1}}},
        {"path": "/h/rest/1"}, {"path": "/h/rest/2"}, {"path": "/h/rest/missing"}]})
    assert r.status_code == 201
    rid = r.json()["requestId"]
    st = http.get(f"{api}/stage/{rid}").json()
    assert st["id"] == rid and "createdAt" in st and "startedAt" in st
    states = {f["path"]: f for f in st["files"]}
    assert states["/h/rest/2"]["state"] == "COMPLETED" and "error" not in states["/h/rest/2"]
    assert states["/h/rest/missing"]["state"] == "FAILED" and states["/h/rest/missing"]["error"]
    assert all("onDisk" not in f for f in st["files"])

    def done():
        s = http.get(f"{api}/stage/{rid}/").json()
        return s if "completedAt" in s else None

    st = wait_for(done, what="stage completion")
    assert {f["path"]: f["state"] for f in st["files"]}["/h/rest/0"] == "COMPLETED"
    assert all("error" not in f for f in st["files"] if f["state"] != "FAILED")
    info = http.post(api + "/archiveinfo/", json={"paths": ["/h/rest/0", "/h/rest/missing",
                                                            "/h"]}).json()
    assert info[0] == {"path": "/h/rest/0", "locality": "DISK_AND_TAPE"}
    assert "error" in info[1] and info[2]["locality"] == "NONE"
    assert http.post(f"{api}/stage/{rid}/cancel", json={"paths": ["/not/there"]}).status_code == 400
    assert http.post(f"{api}/stage/{rid}/cancel", json={"paths": ["/h/rest/0"]}).status_code == 200
    assert http.post(f"{api}/release/{rid}", json={"paths": ["/h/rest/0"]}).status_code == 200
    assert http.post(f"{api}/release/gfal2-placeholder-id",
                     json={"paths": ["/h/rest/1"]}).status_code == 200
    assert http.delete(f"{api}/stage/{rid}").status_code == 200
    assert http.get(f"{api}/stage/{rid}").status_code == 404
    r = http.get(f"{api}/stage/nope")
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"
    assert set(r.json()) == {"status", "title", "detail"}


def test_metrics_openapi(http):
    text = http.get(http.base + "/metrics").text
    for name in ("lta_recall_queue", "lta_tape_mounts_total", "lta_tape_read_bytes_total",
                 "lta_tape_written_bytes_total", "lta_cache_fill_ratio"):
        assert f"# TYPE {name} " in text
    doc = http.get(http.base + "/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/api/v1/stage" in doc["paths"]


def test_plain_http_sendfile(tmp_path, mint, token_key, pki):
    """Plain HTTP (no TLS) serves GET with sendfile; same bytes."""
    from archive.server import serve_in_thread
    from tests.archive.conftest import server_config

    cfg = server_config(tmp_path / "plain", pki, token_key[1],
                        server={"port": 0, "tls_cert": "", "tls_key": "", "ca_dir": ""})
    srv = serve_in_thread(cfg)
    try:
        data = os.urandom(3 << 20)
        h = {"Authorization": f"Bearer {mint()}"}
        assert requests.put(srv.url + "/p/x", data=data, headers=h).status_code == 201
        conn = httpclient.HTTPConnection("127.0.0.1", srv.port)
        conn.request("GET", "/p/x", headers=h)
        assert conn.getresponse().read() == data
    finally:
        srv.stop()
