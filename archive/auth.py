"""Who is calling and what may they do: WLCG bearer tokens, X.509 (and RFC 3820 proxies).

Model: every request gets an :class:`Identity` holding WLCG-profile scopes
(``storage.read:/p``, ``storage.create:/p``, ``storage.modify:/p``, ``storage.stage:/p``).

* Bearer tokens are JWTs verified with the keys in the config (per issuer; RS256/ES256 with a
  public key, or HS256 with a shared secret); their ``scope`` claim is used as is, with paths
  relative to ``auth.token_base_path``.
* A client certificate (an end-entity certificate or an RFC 3820 proxy of one) is mapped to an
  identity name through a grid-mapfile (``"/DC=org/CN=Name" name``); the name's scopes come from
  ``auth.identities`` (a mapped identity without an entry may read everything, nothing more).
* Anonymous callers may read below ``auth.public_read`` prefixes; nothing else. Writes,
  deletions and staging are never anonymous.

``storage.modify`` implies ``storage.create`` (WLCG profile: modify covers writing new data).
"""

from __future__ import annotations

import base64
import binascii
import logging
import shlex
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from archive.config import AuthConfig
from archive.errors import ConfigError, Forbidden, Unauthorized
from archive.paths import under

log = logging.getLogger(__name__)

ACTIONS = ("read", "create", "modify", "stage")
PROXY_CERT_INFO = ObjectIdentifier("1.3.6.1.5.5.7.1.14")
_SHORT = {NameOID.DOMAIN_COMPONENT: "DC", NameOID.COMMON_NAME: "CN",
          NameOID.ORGANIZATION_NAME: "O", NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
          NameOID.COUNTRY_NAME: "C", NameOID.LOCALITY_NAME: "L",
          NameOID.STATE_OR_PROVINCE_NAME: "ST", NameOID.EMAIL_ADDRESS: "emailAddress"}


@dataclass(frozen=True)
class Scope:
    action: str
    path: str

    @classmethod
    def parse(cls, text: str, base: str = "/") -> Scope | None:
        """``storage.read:/data`` -> Scope('read', '/data'); other scopes -> None."""
        name, _, path = text.partition(":")
        if not name.startswith("storage."):
            return None
        action = name[len("storage."):]
        if action not in ACTIONS:
            return None
        path = path or "/"
        full = (base.rstrip("/") + "/" + path.lstrip("/")).rstrip("/") or "/"
        return cls(action, full)


@dataclass
class Identity:
    name: str
    method: str  # anonymous | token | x509
    scopes: list[Scope] = field(default_factory=list)
    dn: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.method == "anonymous"

    def allows(self, action: str, path: str) -> bool:
        wanted = {"create": ("create", "modify")}.get(action, (action,))
        return any(s.action in wanted and under(path, s.path) for s in self.scopes)


AUTHENTICATED = None  # the action of requests any authenticated caller may make (UNLOCK, status)


def authorize(ident: Identity, action: str | None, path: str) -> Identity:
    """The one authorization decision of the archive: may ``ident`` do ``storage.<action>`` on
    ``path`` (``action`` None: any authenticated caller)? Returns the identity, else raises
    Unauthorized (401: anonymous, it may come back with credentials) or Forbidden (403).

    Anonymous callers never hold create, modify or stage (only ``public_read`` read scopes), so
    "anonymous is a 401" and "a missing scope is a 403" are one rule for every route."""
    if ident.allows(action, path) if action else not ident.anonymous:
        return ident
    what = f"storage.{action}" if action else "this request"
    if ident.anonymous:
        raise Unauthorized(f"{path}: {what} needs a bearer token or a client certificate")
    raise Forbidden(f"{path}: {ident.name} lacks {what}")


def dn_of(name: x509.Name) -> str:
    return "".join(f"/{_SHORT.get(a.oid, a.oid.dotted_string)}={a.value}" for a in name)


def is_proxy(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_oid(PROXY_CERT_INFO)
        return True
    except x509.ExtensionNotFound:
        return False


def eec_dn(chain: Sequence[bytes]) -> str:
    """The identity DN of a client: the subject of the end-entity certificate of the *verified*
    chain (DER, leaf first), i.e. the first certificate that is not an RFC 3820 proxy.

    Never derived by cutting CN components off a DN: ``/DC=test/CN=Test User/CN=4242`` may be
    an end-entity certificate of its own, and a proxy of it is not ``/DC=test/CN=Test User``.
    When only the leaf is known (a TLS stack that does not give the verified chain), a proxy
    maps to the DN of the certificate that signed it, exactly; a proxy of a proxy then maps to
    no one and is refused, rather than guessed."""
    if not chain:
        raise Unauthorized("no client certificate")
    certs = [x509.load_der_x509_certificate(der) for der in chain]
    for cert in certs:
        if not is_proxy(cert):
            return dn_of(cert.subject)
    if len(certs) == 1:
        return dn_of(certs[0].issuer)
    raise Unauthorized("the certificate chain holds proxies only, no end-entity certificate")


def read_gridmap(path: str | Path) -> dict[str, str]:
    """``"DN" name[,name2]`` lines -> {DN: first name}; comments and blank lines skipped."""
    out: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read grid-mapfile: {err}") from err
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            parts = shlex.split(line)
        except ValueError as err:
            raise ConfigError(f"{path}:{n}: {err}") from err
        if len(parts) < 2:
            raise ConfigError(f"{path}:{n}: expected '\"DN\" identity'")
        out[parts[0]] = parts[1].split(",")[0]
    return out


def basic_password(value: str) -> str:
    """The password of ``Basic base64(user:password)`` (RFC 7617); a malformed one is a 401."""
    try:
        user_pass = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as err:
        raise Unauthorized("malformed Basic credentials") from err
    _, sep, password = user_pass.partition(":")
    if not sep or not password:
        raise Unauthorized("Basic credentials need a bearer token as the password")
    return password


TOKEN_CACHE_SIZE = 4096


def _time_window(claims: dict, leeway: float) -> tuple[float, float] | None:
    """When a verified token stays acceptable: from ``nbf``/``iat`` to ``exp`` (with the
    leeway jwt.decode applies); None (never cached) when a claim is not a plain number."""
    try:
        end = float(claims["exp"]) + leeway
        start = max([float(claims[k]) for k in ("nbf", "iat") if k in claims] or
                    [float("-inf")]) - leeway
    except (KeyError, TypeError, ValueError):
        return None
    return start, end


class Authenticator:
    def __init__(self, cfg: AuthConfig):
        self.cfg = cfg
        self.gridmap = read_gridmap(cfg.gridmap_file) if cfg.gridmap_file else {}
        self.keys = []
        for k in cfg.token_keys:
            if k.public_key_file:
                try:
                    key = Path(k.public_key_file).read_text()
                except OSError as err:
                    raise ConfigError(f"auth.token_keys: {k.public_key_file}: {err}") from err
            elif k.secret:
                key = k.secret
            else:
                raise ConfigError(f"auth.token_keys: issuer {k.issuer!r} has no key")
            self.keys.append((k, key))
        self.public = [Scope("read", p.rstrip("/") or "/") for p in cfg.public_read]
        # tokens already verified: token -> (valid from, valid until, subject, scopes). A client
        # sends the same token with every request; its signature is checked once (RSA and PEM
        # parsing were 15 % of the server's CPU under load), its time window at every request.
        self._verified: OrderedDict[str, tuple[float, float, str, list[Scope]]] = OrderedDict()
        self._verified_lock = threading.Lock()

    def anonymous(self) -> Identity:
        return Identity("anonymous", "anonymous", list(self.public))

    def from_token(self, token: str) -> Identity:
        now = time.time()
        with self._verified_lock:
            hit = self._verified.get(token)
            if hit is not None:
                self._verified.move_to_end(token)
        if hit is not None:
            start, end, sub, scopes = hit
            if start <= now <= end:
                return Identity(sub, "token", scopes + list(self.public))
            with self._verified_lock:  # outside its window: verified again, refused as before
                self._verified.pop(token, None)
        return self._verify_token(token)

    def _verify_token(self, token: str) -> Identity:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as err:
            raise Unauthorized(f"malformed bearer token: {err}") from err
        iss = unverified.get("iss", "")
        candidates = [(k, key) for k, key in self.keys if not k.issuer or k.issuer == iss]
        if not candidates:
            raise Unauthorized(f"bearer token issuer {iss!r} is not trusted")
        last: Exception | None = None
        for k, key in candidates:
            try:
                claims = jwt.decode(
                    token, key, algorithms=[k.algorithm],
                    audience=self.cfg.token_audience or None,
                    issuer=k.issuer or None,
                    options={"verify_aud": bool(self.cfg.token_audience),
                             "require": ["exp"]},
                    leeway=30,
                )
                break
            except jwt.PyJWTError as err:
                last = err
        else:
            raise Unauthorized(f"bearer token rejected: {last}")
        scopes = [s for s in (Scope.parse(t, self.cfg.token_base_path)
                              for t in str(claims.get("scope", "")).split()) if s]
        sub = str(claims.get("sub", "token"))
        window = _time_window(claims, leeway=30)
        if window is not None:
            with self._verified_lock:
                self._verified[token] = (*window, sub, scopes)
                while len(self._verified) > TOKEN_CACHE_SIZE:
                    self._verified.popitem(last=False)
        return Identity(sub, "token", scopes + list(self.public))

    def from_certificate(self, chain: Sequence[bytes]) -> Identity:
        dn = eec_dn(chain)
        name = self.gridmap.get(dn)
        if name is None:
            raise Unauthorized(f"certificate {dn} is not in the grid-mapfile")
        scope_texts = self.cfg.identities.get(name, ["storage.read:/"])
        scopes = [s for s in (Scope.parse(t) for t in scope_texts) if s]
        return Identity(name, "x509", scopes + list(self.public), dn=dn)

    def identify(self, authorization: str | None, chain: Sequence[bytes] | None,
                 tls: bool = False) -> Identity:
        """``chain``: the client's verified certificate chain (DER, leaf first), if any.

        ``Basic`` credentials are accepted in one form only, and only over TLS: any user name
        and a bearer token as the password (``token:<JWT>``), verified exactly like a
        ``Bearer`` header. WebDAV clients that cannot send a bearer token (litmus, davfs2,
        Windows' mini-redirector) can then use one; there are no passwords here, so a Basic
        password that is not a valid token is a 401, and Basic on plain HTTP is ignored (it
        would put the token on the wire in clear text)."""
        if authorization:
            kind, _, value = authorization.partition(" ")
            if kind.lower() == "bearer" and value.strip():
                return self.from_token(value.strip())
            if kind.lower() == "basic" and tls and value.strip():
                return self.from_token(basic_password(value.strip()))
            if kind.lower() != "basic":  # basic without TLS is ignored
                raise Unauthorized(f"unsupported Authorization scheme {kind!r}")
        if chain:
            return self.from_certificate(chain)
        return self.anonymous()
