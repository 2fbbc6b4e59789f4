"""A throw-away certificate authority for test clusters: CA, host and user credentials.

Why here: the archive (HTTPS) and GridFTP (GSI) need a host certificate and a trusted-CA directory
in the OpenSSL/Globus layout (``<hash>.0`` and ``<hash>.signing_policy``) before ``site.yml`` can
run; a local or Vagrant test cluster has no real CA. Production inventories point at real files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

from appliance.fsutil import atomic_write_bytes

CA_DN = "/DC=test/DC=appliance/CN=Appliance Test CA"
USER_DN = "/DC=test/DC=appliance/CN=Cluster Test User"


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


def _name(dn: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    oids = {"DC": NameOID.DOMAIN_COMPONENT, "CN": NameOID.COMMON_NAME}
    return x509.Name([x509.NameAttribute(oids[k], v) for k, _, v in
                      (p.partition("=") for p in dn.strip("/").split("/"))])


def make_cluster_pki(root: Path, host_names: tuple[str, ...] = ("localhost",)) -> ClusterPKI:
    """Create (once) a CA, a host certificate for ``host_names`` + 127.0.0.1 and a user certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID

    pki = ClusterPKI(Path(root))
    if all(p.exists() for p in (pki.host_cert, pki.host_key, pki.user_cert, pki.user_key, pki.ca_cert)):
        return pki
    pki.cert_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    pem_key = lambda k: k.private_bytes(serialization.Encoding.PEM,  # noqa: E731
                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption())
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (x509.CertificateBuilder().subject_name(_name(CA_DN)).issuer_name(_name(CA_DN))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    def issue(dn: str, server: bool) -> tuple[bytes, bytes]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        b = (x509.CertificateBuilder().subject_name(_name(dn)).issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=90))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                            critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                                                  if server else [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                            critical=False))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(h) for h in host_names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), pem_key(key)

    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    atomic_write_bytes(pki.ca_cert, ca_pem)
    h = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(pki.ca_cert)],
                       check=True, capture_output=True, text=True).stdout.strip()
    atomic_write_bytes(pki.cert_dir / f"{h}.0", ca_pem)
    policy = (f"access_id_CA X509 '{CA_DN}'\npos_rights globus CA:sign\n"
              f"cond_subjects globus '\"/DC=test/DC=appliance/*\"'\n")
    atomic_write_bytes(pki.cert_dir / f"{h}.signing_policy", policy.encode())
    host_dn = f"/DC=test/DC=appliance/CN={host_names[0]}"
    for (cert_path, key_path), (dn, server) in (((pki.host_cert, pki.host_key), (host_dn, True)),
                                                ((pki.user_cert, pki.user_key), (USER_DN, False))):
        cert, key = issue(dn, server)
        atomic_write_bytes(cert_path, cert)
        atomic_write_bytes(key_path, key)
        key_path.chmod(0o600)
    return pki
