"""A small test PKI for TLS, GSI and proxy-certificate tests (shared by archive and transfer tests).

Why: gfal2, davix, Globus GridFTP and Python's ``ssl`` all want a real CA in an OpenSSL-style
certificate directory (``<hash>.0`` plus a Globus ``<hash>.signing_policy``), a host certificate
for ``localhost`` and a user certificate; tests must never depend on the machine's grid set-up.

Usage::

    from tests.pki import make_pki
    pki = make_pki(tmp_path / "pki")           # CA, cert dir, host and user credentials
    proxy = pki.make_proxy(tmp_path / "x509up")  # RFC 3820 proxy: cert + key + user cert
    env = pki.client_env(proxy)                  # X509_CERT_DIR, X509_USER_PROXY

Names: CA ``/DC=test/CN=Test CA``; host ``/DC=test/CN=localhost`` (SAN DNS:localhost,
IP:127.0.0.1); user ``/DC=test/CN=Test User``. Certificates, keys and the CA directory come from
the product's own ``appliance.cluster.pki`` (RSA 2048, PKCS#1, mode 0600); this module adds what
only tests need: the CA key kept on disk, more users, and proxies that may be expired.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from appliance.cluster.pki import (
    cert_pem,
    install_ca,
    issue,
    key_pem,
    key_usage,
    make_ca,
    new_key,
    write_credential,
)
from appliance.dataclient.proxy import PROXY_CERT_INFO

CA_DN = "/DC=test/CN=Test CA"
HOST_DN = "/DC=test/CN=localhost"
USER_DN = "/DC=test/CN=Test User"

# DER: SEQUENCE { SEQUENCE { OID id-ppl-inheritAll (1.3.6.1.5.5.7.21.1) } }
_PROXY_CERT_INFO_INHERIT_ALL = bytes.fromhex("300c300a06082b06010505071501")


@dataclass(frozen=True)
class PKI:
    """Paths of one test PKI; every file exists once :func:`make_pki` returns."""

    root: Path
    cert_dir: Path  # trusted CA directory: <hash>.0, <hash>.signing_policy
    ca_cert: Path
    ca_key: Path
    host_cert: Path
    host_key: Path
    user_cert: Path
    user_key: Path
    ca_hash: str

    # -- more credentials -------------------------------------------------------------------
    def issue_user(self, dn: str, directory: Path | None = None) -> tuple[Path, Path]:
        """Issue another end-entity certificate (e.g. an unmapped user); returns (cert, key)."""
        directory = Path(directory or self.root)
        directory.mkdir(parents=True, exist_ok=True)
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        slug = dn.rsplit("=", 1)[-1].replace(" ", "_").lower()
        cert_path, key_path = directory / f"{slug}cert.pem", directory / f"{slug}key.pem"
        key = new_key()
        write_credential(cert_path, key_path, issue(ca_cert, ca_key, dn, key, server=False, days=30),
                         key)
        return cert_path, key_path

    def make_proxy(self, out: Path, hours: float = 12.0, user_cert: Path | None = None,
                   user_key: Path | None = None, expired: bool = False) -> Path:
        """Write an RFC 3820 proxy (proxy cert, proxy key, issuing user cert) to ``out``, mode 0600.

        The proxy subject is the user's DN plus ``/CN=<serial>``, as ``grid-proxy-init -rfc`` makes.
        ``expired=True`` makes one that expired an hour ago (for refusal tests; dataclient's own
        ``create_proxy`` cannot make those).
        """
        user_cert = Path(user_cert or self.user_cert)
        user_key = Path(user_key or self.user_key)
        eec = x509.load_pem_x509_certificate(user_cert.read_bytes())
        eec_key = serialization.load_pem_private_key(user_key.read_bytes(), None)
        key = new_key()
        serial = x509.random_serial_number() >> 100  # short decimal CN, as Globus does
        subject = x509.Name([*eec.subject, x509.NameAttribute(NameOID.COMMON_NAME, str(serial))])
        now = dt.datetime.now(dt.UTC)
        start, end = (now - dt.timedelta(hours=2), now - dt.timedelta(hours=1)) if expired else (
            now - dt.timedelta(minutes=5), now + dt.timedelta(hours=hours))
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(eec.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.UnrecognizedExtension(PROXY_CERT_INFO,
                                                      _PROXY_CERT_INFO_INHERIT_ALL), critical=True)
            .add_extension(key_usage(ca=False), critical=True)
            .sign(eec_key, hashes.SHA256())
        )
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert_pem(cert) + key_pem(key) + user_cert.read_bytes())
        os.chmod(out, 0o600)
        return out

    # -- environments -----------------------------------------------------------------------
    def client_env(self, proxy: Path | None = None) -> dict[str, str]:
        """Environment for gfal2/davix/globus clients: trust this CA, use the proxy if given."""
        env = {"X509_CERT_DIR": str(self.cert_dir)}
        if proxy:
            env["X509_USER_PROXY"] = str(proxy)
        else:
            env["X509_USER_CERT"] = str(self.user_cert)
            env["X509_USER_KEY"] = str(self.user_key)
        return env

    def server_env(self) -> dict[str, str]:
        """Environment for a Globus server: host credentials and the trusted CA directory."""
        return {"X509_CERT_DIR": str(self.cert_dir), "X509_USER_CERT": str(self.host_cert),
                "X509_USER_KEY": str(self.host_key)}

    def gridmap_line(self, local_user: str = "nobody", dn: str = USER_DN) -> str:
        return f'"{dn}" {local_user}\n'


def make_pki(directory: str | os.PathLike[str]) -> PKI:
    """Create a complete test PKI under ``directory`` (idempotent: reuses files already made)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    paths = {n: root / f"{n}.pem" for n in
             ("ca_cert", "ca_key", "host_cert", "host_key", "user_cert", "user_key")}
    if not all(p.exists() for p in paths.values()):
        ca_cert, ca_key = make_ca(CA_DN)
        write_credential(paths["ca_cert"], paths["ca_key"], ca_cert, ca_key)
        for name, dn, server in (("host", HOST_DN, True), ("user", USER_DN, False)):
            key = new_key()
            write_credential(paths[f"{name}_cert"], paths[f"{name}_key"],
                             issue(ca_cert, ca_key, dn, key, server=server, hosts=("localhost",),
                                   days=30), key)
    cert_dir = root / "certificates"
    ca_hash = install_ca(cert_dir, paths["ca_cert"], CA_DN, "/DC=test/*")
    return PKI(root=root, cert_dir=cert_dir, ca_hash=ca_hash, **paths)
