"""RFC 3820 proxy certificates, made and read with the ``cryptography`` library.

Why our own code and not ``grid-proxy-init``: the client must work where the Globus tools are not
installed, and must renew proxies without the user noticing. A proxy is a short-lived certificate
signed by the user's own key; its subject is the user's DN plus ``/CN=<serial>``; it carries the
critical ProxyCertInfo extension (1.3.6.1.5.5.7.1.14) with the "inherit all" policy, so GridFTP,
dCache, XRootD and our archive accept it as the user. The file holds the proxy certificate, its
unencrypted key and the user certificate (the chain), mode 0600, the layout Globus writes.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from appliance.dataclient.errors import CredentialError, PassphraseNeeded, WrongPassphrase

PROXY_CERT_INFO = ObjectIdentifier("1.3.6.1.5.5.7.1.14")
# DER of ProxyCertInfo ::= SEQUENCE { proxyPolicy SEQUENCE { policyLanguage id-ppl-inheritAll } }
_INHERIT_ALL = bytes.fromhex("300c300a06082b06010505071501")
_SHORT = {NameOID.DOMAIN_COMPONENT: "DC", NameOID.COMMON_NAME: "CN", NameOID.ORGANIZATION_NAME: "O",
          NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.COUNTRY_NAME: "C",
          NameOID.LOCALITY_NAME: "L", NameOID.STATE_OR_PROVINCE_NAME: "ST"}


def dn(name: x509.Name) -> str:
    """The one-line ``/DC=org/CN=Jane`` form used by grid-mapfiles and Globus tools."""
    return "".join(f"/{_SHORT.get(a.oid, a.oid.dotted_string)}={a.value}" for a in name)


def is_proxy(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_oid(PROXY_CERT_INFO)
        return True
    except x509.ExtensionNotFound:
        return False


def load_user_key(key_path: Path, passphrase: bytes | None):
    data = Path(key_path).read_bytes()
    try:
        return serialization.load_pem_private_key(data, passphrase)
    except TypeError as err:  # encrypted but no passphrase given, or the reverse
        if passphrase is None:
            raise PassphraseNeeded(str(key_path)) from err
        return serialization.load_pem_private_key(data, None)
    except ValueError as err:
        if passphrase is not None:
            raise WrongPassphrase(str(key_path)) from err
        raise CredentialError(f"{key_path}: not a PEM private key ({err})") from err


def key_is_encrypted(key_path: Path) -> bool:
    try:
        serialization.load_pem_private_key(Path(key_path).read_bytes(), None)
        return False
    except TypeError:
        return True
    except ValueError as err:
        raise CredentialError(f"{key_path}: not a PEM private key ({err})") from err


@dataclass(frozen=True)
class ProxyInfo:
    path: str
    subject: str
    issuer: str
    identity: str  # the user's DN (subject of the end-entity certificate)
    not_after: dt.datetime
    is_rfc3820: bool

    def seconds_left(self, now: dt.datetime | None = None) -> float:
        return (self.not_after - (now or dt.datetime.now(dt.UTC))).total_seconds()

    def report(self) -> str:
        left = max(0, int(self.seconds_left()))
        kind = "RFC 3820 compliant impersonation proxy" if self.is_rfc3820 else "certificate"
        return "\n".join([
            f"subject  : {self.subject}", f"issuer   : {self.issuer}",
            f"identity : {self.identity}", f"type     : {kind}", f"path     : {self.path}",
            f"timeleft : {left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d}"
            + ("  (EXPIRED)" if left == 0 else ""),
        ])

    def to_json(self) -> dict:
        return {"path": self.path, "subject": self.subject, "issuer": self.issuer,
                "identity": self.identity, "not_after": self.not_after.isoformat(),
                "seconds_left": max(0, int(self.seconds_left())), "rfc3820": self.is_rfc3820}


def read_proxy(path: Path) -> ProxyInfo:
    try:
        certs = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError) as err:
        raise CredentialError(f"{path}: cannot read X.509 proxy ({err})") from err
    first = certs[0]
    eec = next((c for c in certs if not is_proxy(c)), first)
    return ProxyInfo(str(path), dn(first.subject), dn(first.issuer), dn(eec.subject),
                     first.not_valid_after_utc, is_proxy(first))


def create_proxy(user_cert: Path, user_key: Path, out: Path, hours: float = 12.0,
                 passphrase: bytes | None = None, bits: int = 2048) -> ProxyInfo:
    """Sign a new proxy with the user's key; never outlives the user certificate."""
    try:
        eec = x509.load_pem_x509_certificate(Path(user_cert).read_bytes())
    except (OSError, ValueError) as err:
        raise CredentialError(f"{user_cert}: cannot read the user certificate ({err})") from err
    signer = load_user_key(user_key, passphrase)
    if signer.public_key().public_numbers() != eec.public_key().public_numbers():
        raise CredentialError(f"{user_key} does not belong to {user_cert}")
    now = dt.datetime.now(dt.UTC)
    if eec.not_valid_after_utc <= now:
        raise CredentialError(f"{user_cert}: the user certificate expired on "
                              f"{eec.not_valid_after_utc:%Y-%m-%d}")
    not_after = min(now + dt.timedelta(hours=hours), eec.not_valid_after_utc)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    serial = secrets.randbits(31) | 1  # the CN repeats it, as Globus does
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([*eec.subject, x509.NameAttribute(NameOID.COMMON_NAME, str(serial))]))
        .issuer_name(eec.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(not_after)
        .add_extension(x509.UnrecognizedExtension(PROXY_CERT_INFO, _INHERIT_ALL), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=True, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(signer, hashes.SHA256())
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
            f.write(eec.public_bytes(serialization.Encoding.PEM))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return read_proxy(out)
