"""Requests the archive must refuse at once and cleanly: a body that was read and then refused
is answered without waiting (it used to be read a second time, until the client gave up), broken
encodings are 400 (they were 500), and broken framing closes the connection."""

from __future__ import annotations

import socket
import ssl
import time

import pytest
import requests

from tests.archive.conftest import tls_session


@pytest.fixture(scope="module")
def http(lta, pki, mint):
    return tls_session(pki, mint(), lta.url)


@pytest.fixture(scope="module")
def anonymous(pki):
    return tls_session(pki)


PROPFIND_BODY = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'


@pytest.mark.parametrize("case", ["stage not JSON", "archiveinfo not JSON", "propfind missing path",
                                  "propfind anonymous"])
def test_a_refused_body_is_answered_at_once(case, http, anonymous, lta):
    t0 = time.monotonic()
    if case == "stage not JSON":
        r = http.post(lta.url + "/api/v1/stage", data=b"{not json", timeout=10)
        assert r.status_code == 400 and "not JSON" in r.json()["detail"]
    elif case == "archiveinfo not JSON":
        r = http.post(lta.url + "/api/v1/archiveinfo", data=b"[1, 2", timeout=10)
        assert r.status_code == 400
    elif case == "propfind missing path":
        r = http.request("PROPFIND", lta.url + "/no/such/collection", data=PROPFIND_BODY,
                         headers={"Depth": "0", "Content-Type": "application/xml"}, timeout=10)
        assert r.status_code == 404
    else:
        r = anonymous.request("PROPFIND", lta.url + "/private-area", data=PROPFIND_BODY,
                              headers={"Depth": "0"}, timeout=10)
        assert r.status_code == 401
    assert time.monotonic() - t0 < 9, "answered only after the client's own timeout"  # 10 s; usually ms


@pytest.mark.parametrize("path", ["/h/%c0%ae%c0%ae/x", "/h/%ff", "/h/%252e%252e/x", "/h/name%7f", "/h/a%C2%85b"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "MKCOL", "PROPFIND"])
def test_bad_encodings_are_400_not_500(method, path, http, lta):
    r = http.request(method, lta.url + path, data=b"x" if method == "PUT" else None, timeout=10)
    assert r.status_code == 400, (r.status_code, r.text)
    assert lta.archive.catalog.get_file("/h/..") is None


def test_bad_destination_encoding_is_400(http, lta):
    http.put(lta.url + "/h/mv-src.bin", data=b"1", timeout=10).raise_for_status()
    r = http.request("MOVE", lta.url + "/h/mv-src.bin", headers={"Destination": lta.url + "/h/%c0%ae"}, timeout=10)
    assert r.status_code == 400 and lta.archive.catalog.get_file("/h/mv-src.bin") is not None


def _raw(lta, pki, request: bytes) -> bytes:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    with socket.create_connection(("127.0.0.1", lta.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as t:
        t.sendall(request)
        out = b""
        while chunk := t.recv(65536):
            out += chunk
        return out


def test_malformed_chunk_size_is_400_and_closes(lta, pki, mint):
    body = b"zz\r\nhello\r\n0\r\n\r\n"
    req = (f"PUT /h/chunk-bad.bin HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {mint()}\r\n"
           "Transfer-Encoding: chunked\r\n\r\n").encode() + body
    out = _raw(lta, pki, req)  # returns only because the server closes the connection
    assert out.startswith(b"HTTP/1.1 400") or out.startswith(b"HTTP/1.0 400"), out[:200]
    assert b"malformed chunk size" in out and lta.archive.catalog.get_file("/h/chunk-bad.bin") is None


def test_malformed_content_length_is_400(lta, pki, mint):
    req = (f"POST /api/v1/stage HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {mint()}\r\n"
           "Content-Length: 12abc\r\n\r\n{}").encode()
    out = _raw(lta, pki, req)
    assert out.split(b"\r\n")[0].endswith(b"400 Bad Request"), out[:200]


def test_connection_churn_leaks_no_descriptors(lta, pki, mint, http):
    """600 one-shot TLS clients (a thread and a catalog connection each on the server): every
    answer is right and the open descriptors come back to where they were."""
    import gc
    import os

    http.put(lta.url + "/h/churn.bin", data=b"churn", timeout=10).raise_for_status()
    token = mint()
    req = (f"HEAD /h/churn.bin HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
           "Connection: close\r\n\r\n").encode()

    def fds() -> int:
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    for _ in range(20):
        _raw(lta, pki, req)
    time.sleep(0.3)
    before = fds()
    statuses = [_raw(lta, pki, req).split(b"\r\n")[0] for _ in range(600)]
    assert all(s.endswith(b"200 OK") for s in statuses), {s for s in statuses}
    deadline = time.monotonic() + 10
    while fds() - before > 20 and time.monotonic() < deadline:  # the last threads are ending
        time.sleep(0.2)
    assert fds() - before <= 20, f"{fds() - before} descriptors more after 600 connections"


@pytest.mark.parametrize("dest", ["https://other.host/h/moved.bin", "//other.host/h/moved.bin",
                                  "https://localhost.evil:1/h/moved.bin"])
def test_move_to_another_server_is_502_and_touches_nothing(dest, http, lta):
    http.put(lta.url + "/h/stay.bin", data=b"stay", timeout=10).raise_for_status()
    r = http.request("MOVE", lta.url + "/h/stay.bin", headers={"Destination": dest}, timeout=10)
    assert r.status_code == 502, r.text
    assert lta.archive.catalog.get_file("/h/stay.bin") is not None
    assert lta.archive.catalog.get_file("/h/moved.bin") is None


def test_move_on_this_server_still_works(http, lta):
    http.put(lta.url + "/h/mv-a.bin", data=b"a", timeout=10).raise_for_status()
    r = http.request("MOVE", lta.url + "/h/mv-a.bin", headers={"Destination": lta.url + "/h/mv-b.bin"}, timeout=10)
    assert r.status_code == 201 and lta.archive.catalog.get_file("/h/mv-b.bin") is not None


@pytest.mark.parametrize("method", ["PATCH", "TRACE", "BREW", "PROPPATCH2"])
def test_unknown_methods_are_405_with_allow(method, http, lta):
    r = http.request(method, lta.url + "/h/x", timeout=10)
    assert r.status_code == 405 and "PROPFIND" in r.headers["Allow"], (r.status_code, r.headers)


def test_discovery_does_not_echo_a_foreign_host(lta, pki):
    r = requests.get(lta.url + "/.well-known/wlcg-tape-rest-api", verify=str(pki.ca_cert),
                     headers={"Host": "attacker.example:443"}, timeout=10)
    assert r.status_code == 200
    uri = r.json()["endpoints"][0]["uri"]
    assert "attacker" not in uri and f":{lta.port}" in uri, uri
