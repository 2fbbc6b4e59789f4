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
IP:127.0.0.1); user ``/DC=test/CN=Test User``. Keys are RSA 2048, unencrypted, mode 0600,
PKCS#1 ("BEGIN RSA PRIVATE KEY"), which both OpenSSL and Globus read.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

CA_DN = "/DC=test/CN=Test CA"
HOST_DN = "/DC=test/CN=localhost"
USER_DN = "/DC=test/CN=Test User"

#: RFC 3820 ProxyCertInfo extension and the "inherit all" policy language.
PROXY_CERT_INFO_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.14")
# DER: SEQUENCE { SEQUENCE { OID id-ppl-inheritAll (1.3.6.1.5.5.7.21.1) } }
_PROXY_CERT_INFO_INHERIT_ALL = bytes.fromhex("300c300a06082b06010505071501")

_KEY_FORMAT = serialization.PrivateFormat.TraditionalOpenSSL


def dn_to_name(dn: str) -> x509.Name:
    """``/DC=test/CN=Test User`` (the Globus/OpenSSL one-line form) to an x509 Name."""
    oids = {"DC": NameOID.DOMAIN_COMPONENT, "CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME,
            "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "C": NameOID.COUNTRY_NAME}
    attrs = []
    for part in dn.strip("/").split("/"):
        key, _, value = part.partition("=")
        attrs.append(x509.NameAttribute(oids[key], value))
    return x509.Name(attrs)


def name_to_dn(name: x509.Name) -> str:
    """Inverse of :func:`dn_to_name` (order as encoded, which is the Globus order)."""
    short = {NameOID.DOMAIN_COMPONENT: "DC", NameOID.COMMON_NAME: "CN", NameOID.ORGANIZATION_NAME: "O",
             NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.COUNTRY_NAME: "C"}
    return "".join(f"/{short.get(a.oid, a.oid.dotted_string)}={a.value}" for a in name)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, _KEY_FORMAT, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


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
        key = _new_key()
        cert = _issue(ca_cert, ca_key, dn_to_name(dn), key, client=True, server=False)
        cert_path.write_bytes(_pem(cert))
        _write_key(key_path, key)
        return cert_path, key_path

    def make_proxy(self, out: Path, hours: float = 12.0, user_cert: Path | None = None,
                   user_key: Path | None = None, expired: bool = False) -> Path:
        """Write an RFC 3820 proxy (proxy cert, proxy key, issuing user cert) to ``out``, mode 0600.

        The proxy subject is the user's DN plus ``/CN=<serial>``, as ``grid-proxy-init -rfc`` makes.
        ``expired=True`` makes one that expired an hour ago (for refusal tests).
        """
        user_cert = Path(user_cert or self.user_cert)
        user_key = Path(user_key or self.user_key)
        eec = x509.load_pem_x509_certificate(user_cert.read_bytes())
        eec_key = serialization.load_pem_private_key(user_key.read_bytes(), None)
        key = _new_key()
        serial = x509.random_serial_number() >> 100  # short decimal CN, as Globus does
        subject = x509.Name([*eec.subject, x509.NameAttribute(NameOID.COMMON_NAME, str(serial))])
        now = _now()
        start, end = (now - dt.timedelta(hours=2), now - dt.timedelta(hours=1)) if expired else (
            now - dt.timedelta(minutes=5), now + dt.timedelta(hours=hours))
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(eec.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.UnrecognizedExtension(PROXY_CERT_INFO_OID,
                                                      _PROXY_CERT_INFO_INHERIT_ALL), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=True, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
        )
        cert = builder.sign(eec_key, hashes.SHA256())
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(_pem(cert))
            f.write(key.private_bytes(serialization.Encoding.PEM, _KEY_FORMAT,
                                      serialization.NoEncryption()))
            f.write(user_cert.read_bytes())
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


def _issue(ca_cert: x509.Certificate, ca_key, subject: x509.Name, key: rsa.RSAPrivateKey, *,
           client: bool, server: bool, san: list[x509.GeneralName] | None = None,
           days: int = 30) -> x509.Certificate:
    now = _now()
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=True, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
                       critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def subject_hash(cert_path: Path) -> str:
    """OpenSSL's subject hash (the ``<hash>.0`` file name); asks the openssl tool itself."""
    out = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(cert_path)],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def make_pki(directory: str | os.PathLike[str]) -> PKI:
    """Create a complete test PKI under ``directory`` (idempotent: reuses files already made)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    cert_dir = root / "certificates"
    cert_dir.mkdir(exist_ok=True)
    paths = {n: root / f"{n}.pem" for n in
             ("ca_cert", "ca_key", "host_cert", "host_key", "user_cert", "user_key")}
    if not all(p.exists() for p in paths.values()):
        now = _now()
        ca_key = _new_key()
        ca_name = dn_to_name(CA_DN)
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        paths["ca_cert"].write_bytes(_pem(ca_cert))
        _write_key(paths["ca_key"], ca_key)

        host_key = _new_key()
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        host_cert = _issue(ca_cert, ca_key, dn_to_name(HOST_DN), host_key, client=True,
                           server=True, san=san)
        paths["host_cert"].write_bytes(_pem(host_cert))
        _write_key(paths["host_key"], host_key)

        user_key = _new_key()
        user_cert = _issue(ca_cert, ca_key, dn_to_name(USER_DN), user_key, client=True,
                           server=False)
        paths["user_cert"].write_bytes(_pem(user_cert))
        _write_key(paths["user_key"], user_key)

    ca_hash = subject_hash(paths["ca_cert"])
    (cert_dir / f"{ca_hash}.0").write_bytes(paths["ca_cert"].read_bytes())
    (cert_dir / f"{ca_hash}.signing_policy").write_text(
        f"access_id_CA X509 '{CA_DN}'\n"
        "pos_rights globus CA:sign\n"
        "cond_subjects globus '\"/DC=test/*\"'\n"
    )
    return PKI(root=root, cert_dir=cert_dir, ca_hash=ca_hash, **paths)
