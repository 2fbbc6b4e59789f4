"""Bearer-token scopes, X.509 proxies and anonymous access: accepted and refused as they should."""

from __future__ import annotations

import socket
import ssl

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from archive.auth import Scope
from tests.archive.conftest import tls_session


@pytest.fixture
def s(pki):
    return tls_session(pki)


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def test_scope_parsing():
    assert Scope.parse("storage.read:/data") == Scope("read", "/data")
    assert Scope.parse("storage.modify:/") == Scope("modify", "/")
    assert Scope.parse("storage.stage:data", base="/vo") == Scope("stage", "/vo/data")
    assert Scope.parse("openid") is None and Scope.parse("storage.fly:/") is None


def test_token_scopes_enforced(lta, s, mint):
    url = lta.url
    rw = mint("storage.create:/scoped storage.read:/scoped")
    assert s.put(url + "/scoped/a", data=b"1", headers=bearer(rw)).status_code == 201
    # create does not allow overwrite or delete (modify)
    assert s.put(url + "/scoped/a", data=b"2", headers=bearer(rw)).status_code == 403
    assert s.delete(url + "/scoped/a", headers=bearer(rw)).status_code == 403
    # path-bound: /scopedX is not below /scoped
    assert s.put(url + "/scopedX/a", data=b"1", headers=bearer(rw)).status_code == 403
    ro = mint("storage.read:/scoped")
    assert s.get(url + "/scoped/a", headers=bearer(ro)).status_code == 200
    assert s.put(url + "/scoped/b", data=b"1", headers=bearer(ro)).status_code == 403
    r = s.post(url + "/api/v1/stage", json={"files": [{"path": "/scoped/a"}]},
               headers=bearer(ro))
    assert r.status_code == 403
    st = mint("storage.stage:/scoped")
    r = s.post(url + "/api/v1/stage", json={"files": [{"path": "/scoped/a"}]}, headers=bearer(st))
    assert r.status_code == 201
    mod = mint("storage.modify:/scoped")
    assert s.delete(url + "/scoped/a", headers=bearer(mod)).status_code == 204


def test_bad_tokens_refused(lta, s, mint):
    url = lta.url + "/"
    assert s.get(url, headers=bearer(mint(lifetime=-120))).status_code == 401  # expired
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert s.get(url, headers=bearer(mint(signer=other))).status_code == 401  # wrong key
    assert s.get(url, headers=bearer(mint(issuer="https://evil"))).status_code == 401
    assert s.get(url, headers=bearer("not.a.jwt")).status_code == 401
    r = s.get(url, headers=bearer(mint(lifetime=-120)))
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_anonymous(lta, s, mint):
    url = lta.url
    assert s.put(url + "/public/x", data=b"1", headers=bearer(mint())).status_code == 201
    assert s.get(url + "/public/x").status_code == 200  # public read prefix
    assert s.get(url + "/scoped").status_code == 401
    assert s.put(url + "/public/y", data=b"1").status_code == 401  # never anonymous writes
    assert s.delete(url + "/public/x").status_code == 401
    r = s.post(url + "/api/v1/stage", json={"files": [{"path": "/public/x"}]})
    assert r.status_code == 401


def test_proxy_accepted_and_mapped(lta, s, pki, tmp_path):
    proxy = pki.make_proxy(tmp_path / "p")
    r = s.put(lta.url + "/x509/a", data=b"1", cert=str(proxy))
    assert r.status_code == 201
    assert lta.archive.catalog.get_file("/x509/a").owner == "alice"
    # a plain end-entity certificate works too
    r = s.get(lta.url + "/x509/a", cert=(str(pki.user_cert), str(pki.user_key)))
    assert r.status_code == 200


def _assert_handshake_refused(ctx: ssl.SSLContext, port: int) -> None:
    """The server ends the TLS session instead of answering a request over it."""
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as t:
            t.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            if not t.recv(100):
                raise ConnectionError("closed")


def test_expired_proxy_refused(lta, pki, tmp_path):
    proxy = pki.make_proxy(tmp_path / "old", expired=True)
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(proxy))
    _assert_handshake_refused(ctx, lta.port)


def test_unmapped_dn_refused(lta, s, pki, tmp_path):
    cert, key = pki.issue_user("/DC=test/CN=Nobody Known", tmp_path)
    r = s.get(lta.url + "/x509", cert=(str(cert), str(key)))
    assert r.status_code == 401 and "grid-mapfile" in r.json()["detail"]


def test_untrusted_ca_refused(lta, tmp_path):
    from tests.pki import make_pki

    other = make_pki(tmp_path / "otherca")
    ctx = ssl.create_default_context(cafile=str(other.ca_cert))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(other.user_cert), str(other.user_key))
    _assert_handshake_refused(ctx, lta.port)


def test_identity_comes_from_the_end_entity_certificate_not_from_cutting_the_dn(lta, s, pki, tmp_path):
    """A certificate the trusted CA issued as `<alice's DN>/CN=4242`, used to sign an RFC 3820
    proxy, is somebody else: stripping the trailing numeric CN must not make it alice."""
    from tests.pki import USER_DN

    cert, key = pki.issue_user(f"{USER_DN}/CN=4242", tmp_path / "lookalike")
    proxy = pki.make_proxy(tmp_path / "lookalike-proxy", user_cert=cert, user_key=key)
    r = s.put(lta.url + "/x509/evil", data=b"1", cert=str(proxy))
    assert r.status_code == 401 and f"{USER_DN}/CN=4242" in r.json()["detail"], r.text
    assert lta.archive.catalog.get_file("/x509/evil") is None
    r = s.put(lta.url + "/x509/evil", data=b"1", cert=(str(cert), str(key)))  # the certificate alone
    assert r.status_code == 401 and lta.archive.catalog.get_file("/x509/evil") is None


def test_a_proxy_of_a_proxy_maps_to_its_end_entity_certificate(lta, s, pki, tmp_path):
    """Delegation twice (as FTS does): the identity is the EEC at the end of the verified chain."""
    import re

    first = pki.make_proxy(tmp_path / "first")
    pem = first.read_text()
    cert1 = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", pem, re.S).group(0)
    key1 = re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----\n", pem, re.S).group(0)
    (tmp_path / "c1.pem").write_text(cert1)
    (tmp_path / "k1.pem").write_text(key1)
    second = pki.make_proxy(tmp_path / "second", user_cert=tmp_path / "c1.pem", user_key=tmp_path / "k1.pem")
    # the file must carry the whole chain: proxy 2, its key, proxy 1, alice's certificate
    second.write_bytes(second.read_bytes() + pki.user_cert.read_bytes())
    r = s.put(lta.url + "/x509/delegated", data=b"1", cert=str(second))
    assert r.status_code == 201, r.text
    assert lta.archive.catalog.get_file("/x509/delegated").owner == "alice"
