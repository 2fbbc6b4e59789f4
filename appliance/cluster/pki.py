"""A throw-away certificate authority: CA, host and user credentials in the grid layout.

Why here: the archive (HTTPS) and GridFTP (GSI) need a host certificate and a trusted-CA directory
in the OpenSSL/Globus layout (``<hash>.0`` and ``<hash>.signing_policy``) before ``site.yml`` can
run; a local or Vagrant test cluster has no real CA. Production inventories point at real files.
The test suite's PKI (``tests/pki.py``) is built from the same pieces.

Keys are RSA 2048, unencrypted, PKCS#1 ("BEGIN RSA PRIVATE KEY", which both OpenSSL and Globus
read), written atomically with mode 0600. Names use the Globus one-line form ``/DC=test/CN=x``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.fsutil import atomic_write_bytes

CA_DN = "/DC=test/DC=appliance/CN=Appliance Test CA"
USER_DN = "/DC=test/DC=appliance/CN=Cluster Test User"

_OIDS = {"DC": NameOID.DOMAIN_COMPONENT, "CN": NameOID.COMMON_NAME,
         "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
         "C": NameOID.COUNTRY_NAME}
_SHORT = {oid: short for short, oid in _OIDS.items()}


def dn_to_name(dn: str) -> x509.Name:
    """``/DC=test/CN=Test User`` (the Globus/OpenSSL one-line form) to an x509 Name."""
    return x509.Name([x509.NameAttribute(_OIDS[k], v) for k, _, v in
                      (p.partition("=") for p in dn.strip("/").split("/"))])


def name_to_dn(name: x509.Name) -> str:
    """Inverse of :func:`dn_to_name` (order as encoded, which is the Globus order)."""
    return "".join(f"/{_SHORT.get(a.oid, a.oid.dotted_string)}={a.value}" for a in name)


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_public(path: Path, data: bytes) -> None:
    """Certificates and CA files are public: readable by the unprivileged accounts servers
    switch to (GridFTP checks the data channel after mapping the user to ``nobody``)."""
    atomic_write_bytes(path, data)
    path.chmod(0o644)


def write_credential(cert_path: Path, key_path: Path, cert: x509.Certificate,
                     key: rsa.RSAPrivateKey) -> None:
    write_public(cert_path, cert_pem(cert))
    atomic_write_bytes(key_path, key_pem(key))  # the temp file is 0600 from its creation
    key_path.chmod(0o600)


def key_usage(ca: bool) -> x509.KeyUsage:
    """Signing certificates and CRLs for a CA; signatures and key exchange for anything else
    (hosts, users, RFC 3820 proxies)."""
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=not ca, data_encipherment=False, key_agreement=False,
                         key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False)


def _builder(subject: str, issuer: x509.Name, key: rsa.RSAPrivateKey, days: int,
             ca: bool) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(dn_to_name(subject)).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(key_usage(ca), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))


def make_ca(dn: str, days: int = 365) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = new_key()
    return _builder(dn, dn_to_name(dn), key, days, ca=True).sign(key, hashes.SHA256()), key


def issue(ca_cert: x509.Certificate, ca_key: rsa.RSAPrivateKey, dn: str, key: rsa.RSAPrivateKey, *,
          server: bool, hosts: Iterable[str] = (), days: int = 90) -> x509.Certificate:
    """An end-entity certificate: client auth always, server auth (and a SAN with ``hosts`` and
    127.0.0.1) when ``server``."""
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server else [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    b = (_builder(dn, ca_cert.subject, key, days, ca=False)
         .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
                        critical=False))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(h) for h in hosts] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return b.sign(ca_key, hashes.SHA256())


def subject_hash(cert_path: Path) -> str:
    """OpenSSL's subject hash (the ``<hash>.0`` file name); asks the openssl tool itself."""
    return subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(cert_path)],
                          check=True, capture_output=True, text=True).stdout.strip()


def install_ca(cert_dir: Path, ca_cert_path: Path, ca_dn: str, subjects: str) -> str:
    """Make ``cert_dir`` trust the CA: ``<hash>.0`` plus the Globus signing policy allowing it to
    sign ``subjects`` (a glob such as ``/DC=test/*``). Returns the hash."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    h = subject_hash(ca_cert_path)
    write_public(cert_dir / f"{h}.0", ca_cert_path.read_bytes())
    policy = (f"access_id_CA X509 '{ca_dn}'\npos_rights globus CA:sign\n"
              f"cond_subjects globus '\"{subjects}\"'\n")
    write_public(cert_dir / f"{h}.signing_policy", policy.encode())
    return h


@dataclass(frozen=True)
class ClusterPKI:
    root: Path

    @property
    def cert_dir(self) -> Path:
        return self.root / "certificates"

    host_cert = property(lambda self: self.root / "hostcert.pem")
    host_key = property(lambda self: self.root / "hostkey.pem")
    user_cert = property(lambda self: self.root / "usercert.pem")
    user_key = property(lambda self: self.root / "userkey.pem")
    ca_cert = property(lambda self: self.root / "cacert.pem")


def make_cluster_pki(root: Path, host_names: tuple[str, ...] = ("localhost",)) -> ClusterPKI:
    """Create (once) a CA, a host certificate for ``host_names`` + 127.0.0.1 and a user certificate."""
    pki = ClusterPKI(Path(root))
    if all(p.exists() for p in (pki.host_cert, pki.host_key, pki.user_cert, pki.user_key, pki.ca_cert)):
        return pki
    ca, ca_key = make_ca(CA_DN)
    write_public(pki.ca_cert, cert_pem(ca))
    install_ca(pki.cert_dir, pki.ca_cert, CA_DN, "/DC=test/DC=appliance/*")
    for cert_path, key_path, dn, server in (
            (pki.host_cert, pki.host_key, f"/DC=test/DC=appliance/CN={host_names[0]}", True),
            (pki.user_cert, pki.user_key, USER_DN, False)):
        key = new_key()
        write_credential(cert_path, key_path, issue(ca, ca_key, dn, key, server=server,
                                                    hosts=host_names), key)
    return pki
