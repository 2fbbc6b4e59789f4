"""``archive``: run and operate the Long Term Archive.

Every command reads one configuration (``--config FILE`` or ``$ARCHIVE_CONFIG``, plus
``ARCHIVE__SECTION__FIELD`` environment overrides); ``--json`` gives machine-readable output.
Exit codes: the product's one table (``appliance.exitcodes``), printed by every ``--help``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from appliance.cliutil import run_command, teach_exit_codes
from appliance.errors import ApplianceError, ConfigError, NotFoundError
from appliance.exitcodes import Exit
from archive.config import ArchiveConfig, load_config


class NoToken(ApplianceError):
    exit_code = Exit.PERMISSION


EPILOG = """\
typical session:
  archive serve --config lta.yaml                 # HTTPS/WebDAV + Tape REST on server.port
  archive ingest --config lta.yaml obs/*.fits --dest /lofar/L123   (server stopped, or use HTTP)
  archive ls /lofar/L123 ; archive stat /lofar/L123/a.fits
  archive stage /lofar/L123/a.fits --lifetime PT2H ; archive status REQUEST_ID
  archive release REQUEST_ID
  archive catalog backup catalog-backup.db ; archive catalog rebuild --into rebuilt.db
  archive tapes ; archive drives --url https://127.0.0.1:8443
  archive migrate ; archive evict /lofar/L123/a.fits        (operator, over the admin API)
  TOKEN=$(archive token issue --scope 'storage.read:/ storage.create:/scratch' --lifetime 1h)
configuration: docs/ARCHIVE.md lists every key; a minimal file is just `root: /srv/lta`.
"""


def _print(args: argparse.Namespace, obj: Any, text: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if args.json else text)


def _config(args: argparse.Namespace) -> ArchiveConfig:
    path = args.config or os.environ.get("ARCHIVE_CONFIG")
    overrides: dict[str, Any] = {}
    if getattr(args, "root", None):
        overrides["root"] = args.root
    return load_config(path, **overrides)


def _archive(args: argparse.Namespace, exclusive: bool):
    from archive.engine import Archive

    return Archive(_config(args), exclusive=exclusive)


# -- commands ---------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from archive import accesslog
    from archive.server import build_server

    accesslog.configure(json_logs=args.json, verbose=args.verbose)
    cfg = _config(args)
    if args.port is not None:
        cfg.server.port = args.port
    httpd = build_server(cfg)
    if cfg.clock.mode == "real":
        httpd.archive.start()
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    info = {"url": f"{httpd.scheme}://{cfg.server.host}:{httpd.port}", "port": httpd.port,
            "root": str(cfg.root_path), "pid": os.getpid()}
    # one line, so a supervising process can read the bound port from the first line
    print(json.dumps(info) if args.json else
          f"archive serving {info['url']} (root {info['root']}, pid {info['pid']})")
    sys.stdout.flush()
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
        httpd.archive.close()
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from archive.paths import normalize

    dest = normalize(args.dest, decoded=True)
    items: list[tuple[Path, str]] = []
    for src in args.paths:
        p = Path(src)
        if p.is_symlink() and not args.follow_symlinks:
            raise ConfigError(f"{p}: is a symbolic link (use --follow-symlinks)")
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_symlink() and not args.follow_symlinks:
                    raise ConfigError(f"{f}: is a symbolic link (use --follow-symlinks)")
                if f.is_file():
                    items.append((f, f"{dest}/{p.name}/{f.relative_to(p).as_posix()}"))
        elif p.is_file():
            items.append((p, f"{dest}/{p.name}"))
        else:
            raise NotFoundError(f"{p}: no such file or directory")
    a = _archive(args, exclusive=True)
    owner = args.owner or os.environ.get("USER", "archive")
    done = []
    try:
        total = sum(p.stat().st_size for p, _ in items)
        with tqdm(total=total, unit="B", unit_scale=True, desc="ingest",
                  disable=args.json or not sys.stderr.isatty()) as bar:
            for src, logical in items:
                e = a.ingest_local(src, logical, owner, follow_symlinks=args.follow_symlinks)
                done.append(e.to_json())
                bar.update(e.size)
    finally:
        a.close()
    _print(args, done, "\n".join(f"{d['adler32']}  {d['size']:>14}  {d['path']}" for d in done)
           + f"\ningested {len(done)} files; they go to tape within "
           f"{a.cfg.migration.max_age_seconds:g} s of archive time once the server runs")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from archive.errors import NotFound
    from archive.paths import normalize

    a = _archive(args, exclusive=False)
    try:
        path = normalize(args.path, decoded=True)
        if not a.catalog.get_dir(path):
            if a.catalog.get_file(path):
                return cmd_stat(args)
            raise NotFound(path)
        dirs, files = a.catalog.list_dir(path)
        rows = [{"path": d.path, "type": "collection"} for d in dirs] + [
            {"path": f.path, "type": "file", "size": f.size, "adler32": f.adler32,
             "locality": a.locality(f.path)} for f in files]
    finally:
        a.close()
    text = "\n".join(f"{'d' if r['type'] == 'collection' else '-'} {r.get('size', 0):>14} "
                     f"{r.get('locality', ''):<14} {r['path']}" for r in rows)
    _print(args, rows, text)
    return 0


def cmd_stat(args: argparse.Namespace) -> int:
    a = _archive(args, exclusive=False)
    try:
        f = a.stat(args.path)
        prod = a.catalog.get_product(f.file_id)
        info = {**f.to_json(), "locality": a.locality(f.path),
                "tape_copies": [r.__dict__ for r in a.catalog.tape_replicas(f.file_id)],
                "metadata": prod.to_json() if prod else {}}
    finally:
        a.close()
    text = "\n".join(f"{k:>12}: {v}" for k, v in info.items())
    _print(args, info, text)
    return 0


def _request_text(req: Any) -> str:
    from archive.cache import format_time

    lines = [f"request {req.request_id} by {req.owner}: created {format_time(req.created)}, "
             f"completed {format_time(req.completed) or '-'}"]
    lines += [f"  {f.state:<10} {f.path}" + (f"  ({f.error})" if f.error else "")
              for f in req.files]
    return "\n".join(lines)


def cmd_stage(args: argparse.Namespace) -> int:
    from archive.taperest import request_json

    a = _archive(args, exclusive=False)
    try:
        rid = a.stage([(p, args.lifetime) for p in args.paths], args.owner or "cli")
        req = a.stage_status(rid)
        deadline = time.monotonic() + args.wait
        while args.wait and req.completed is None and time.monotonic() < deadline:
            time.sleep(0.5)
            req = a.stage_status(rid)
    finally:
        a.close()
    _print(args, request_json(req), _request_text(req))
    failed = any(f.state == "FAILED" for f in req.files)
    return Exit.REMOTE if failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    from archive.taperest import request_json

    a = _archive(args, exclusive=False)
    try:
        req = a.stage_status(args.request_id)
    finally:
        a.close()
    _print(args, request_json(req), _request_text(req))
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    a = _archive(args, exclusive=False)
    try:
        n = a.release(args.request_id, args.paths or None)
    finally:
        a.close()
    _print(args, {"released_pins": n}, f"released {n} pins")
    return 0


def cmd_catalog_backup(args: argparse.Namespace) -> int:
    cfg = _config(args)
    from archive.catalogs import open_catalog

    cat = open_catalog(cfg)
    try:
        if cfg.catalog.backend != "sqlite":
            raise ConfigError("PostgreSQL catalogs are backed up with pg_dump "
                                 f"(dsn: {cfg.catalog.dsn.split('password')[0]}...)")
        cat.backup(args.dest)  # type: ignore[attr-defined]
    finally:
        cat.close()
    _print(args, {"backup": args.dest}, f"catalog backed up to {args.dest}")
    return 0


def cmd_catalog_rebuild(args: argparse.Namespace) -> int:
    from archive.catalog_sqlite import SqliteCatalog
    from archive.engine import _lock_dir
    from archive.rebuild import rebuild
    from archive.tape import TapeLibrary

    cfg = _config(args)
    fd = _lock_dir(cfg.root_path)
    try:
        target = Path(args.into) if args.into else cfg.catalog_path
        if target.exists() and not args.into:
            if not args.replace:
                raise ConfigError(f"{target} exists: pass --replace (it is kept as "
                                     f"{target.name}.before-rebuild) or --into NEW.db")
            target.rename(target.with_name(target.name + ".before-rebuild"))
            for ext in ("-wal", "-shm"):
                Path(str(target) + ext).unlink(missing_ok=True)
        elif target.exists():
            raise ConfigError(f"{target} already exists: name a new file for --into")
        lib = TapeLibrary(cfg.root_path / "tapes", cfg.tape)
        cat = SqliteCatalog(str(target))
        disk = cfg.root_path / "disk"
        try:
            res = rebuild(lib, cat, lambda fid: disk / fid[:2] / fid)
        finally:
            cat.close()
    finally:
        os.close(fd)
    _print(args, res.to_json(), res.report())
    return 0 if res.ok else 1


def cmd_tapes(args: argparse.Namespace) -> int:
    a = _archive(args, exclusive=False)
    try:
        rows = a.tape_report()
    finally:
        a.close()
    text = "\n".join(f"{r['tape']}  {r['pool']}  {r['records']:>6} records  "
                     f"{r['used_bytes']:>16} / {r['capacity_bytes']} bytes"
                     + ("  FULL" if r["full"] else "") for r in rows)
    _print(args, rows, text)
    return 0


def cmd_drives(args: argparse.Namespace) -> int:
    if args.url:
        state = _Remote(args).call("GET", "/api/admin/drives")
        rows = state["drives"]
        def line(r: dict[str, Any]) -> str:
            op = f"{r['operation']} {r['seconds_left']:.0f} s left" if r["operation"] else ""
            return (f"{r['drive']}: {r['state']:<6} mounted {r['mounted'] or '-':<10} {op:<22} "
                    f"queued reads {r['queued_reads']}, mounts {r['mounts']}")

        text = "\n".join(line(r) for r in rows)
        _print(args, state, text)
        return 0
    cfg = _config(args)
    rows = [{"drive": f"drive{i}", "mount_seconds": cfg.tape.mount_seconds,
             "rate_bytes_per_second": cfg.tape.rate_bytes_per_second}
            for i in range(cfg.tape.drives)]
    _print(args, rows, "\n".join(f"{r['drive']}: mount {r['mount_seconds']:g} s, "
                                 f"{r['rate_bytes_per_second'] / 1e6:g} MB/s" for r in rows)
           + "\n(configured drives; live state: archive drives --url https://HOST:PORT)")
    return 0


# -- tokens and operator actions ------------------------------------------------------------------
def parse_lifetime(text: str) -> float:
    """``1h``, ``30m``, ``2d``, ``90s``, ``3600`` or ISO 8601 (``PT1H``) -> seconds."""
    from archive.cache import parse_duration

    t = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    try:
        if t and t[-1] in units and t[:-1].replace(".", "", 1).isdigit():
            value = float(t[:-1]) * units[t[-1]]
        elif t.replace(".", "", 1).isdigit():
            value = float(t)
        else:
            value = parse_duration(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        from archive.errors import ConfigError

        raise ConfigError(f"--lifetime {text!r}: expected e.g. 1h, 30m, 2d, 3600 or PT1H")
    return value


def _signing_key(cfg: ArchiveConfig, issuer: str | None) -> tuple[Any, str]:
    """(token key config, signing key) of ``issuer`` (default: the first key that can sign)."""
    from archive.errors import ConfigError

    keys = [k for k in cfg.auth.token_keys if issuer is None or k.issuer == issuer]
    for k in keys:
        if k.algorithm.upper().startswith("HS") and k.secret:
            return k, k.secret
        if k.private_key_file:
            try:
                return k, Path(k.private_key_file).read_text()
            except OSError as err:
                raise ConfigError(f"auth.token_keys: {k.private_key_file}: {err}") from err
    which = f"issuer {issuer!r}" if issuer else "any issuer"
    raise ConfigError(f"auth.token_keys: no signing key for {which}: give the key an HS256 "
                      "'secret' or a 'private_key_file' (PEM) next to its public_key_file")


def issue_token(cfg: ArchiveConfig, scope: str, lifetime: float, subject: str,
                issuer: str | None = None, audience: str | None = None) -> tuple[str, dict]:
    """Mint a WLCG-profile token with the server's key and verify it as the server would."""
    import uuid

    import jwt

    from archive.auth import Authenticator, Scope
    from archive.errors import ConfigError

    bad = [s for s in scope.split() if Scope.parse(s) is None]
    if bad or not scope.split():
        raise ConfigError(f"--scope {scope!r}: expected storage.{{read,create,modify,stage}}:/PATH "
                          f"items separated by spaces (bad: {bad[:3]})")
    k, key = _signing_key(cfg, issuer)
    now = int(time.time())
    claims = {"iss": k.issuer, "sub": subject, "scope": scope, "iat": now, "nbf": now - 5,
              "exp": now + int(lifetime), "jti": str(uuid.uuid4()), "wlcg.ver": "1.0"}
    aud = audience or (cfg.auth.token_audience[0] if cfg.auth.token_audience else None)
    if aud:
        claims["aud"] = aud
    if not k.issuer:
        claims.pop("iss")
    try:
        token = jwt.encode(claims, key, algorithm=k.algorithm)
    except (ValueError, TypeError, jwt.PyJWTError) as err:
        raise ConfigError(f"auth.token_keys: cannot sign with {k.algorithm}: {err}") from err
    Authenticator(cfg.auth).from_token(token)  # refuses a key pair that does not match
    return token, claims


def cmd_token_issue(args: argparse.Namespace) -> int:
    cfg = _config(args)
    token, claims = issue_token(cfg, args.scope, parse_lifetime(args.lifetime),
                                args.subject or os.environ.get("USER", "operator"),
                                args.issuer, args.audience)
    _print(args, {"token": token, "claims": claims}, token)
    return 0


class _Remote:
    """The running server's admin API: --url (default the configured address), a token from
    --token, $BEARER_TOKEN, or minted for 5 minutes with the server's key from the config."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cfg = _config(args) if (args.config or os.environ.get("ARCHIVE_CONFIG")
                                     or not (args.url and self._given_token())) else None
        s = self.cfg.server if self.cfg else None
        if args.url:
            self.url = args.url.rstrip("/")
        else:
            assert s is not None
            host = "127.0.0.1" if s.host in ("", "0.0.0.0", "::") else s.host
            self.url = f"{'https' if s.tls_cert else 'http'}://{host}:{s.port}"
        self.token = self._given_token()
        if not self.token:
            if self.cfg is None:
                raise NoToken("no token: pass --token, set $BEARER_TOKEN, or --config")
            self.token, _ = issue_token(self.cfg, "storage.modify:/ storage.read:/", 300,
                                        os.environ.get("USER", "operator"))

    def _given_token(self) -> str | None:
        return getattr(self.args, "token", None) or os.environ.get("BEARER_TOKEN") or None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        import requests

        from archive.errors import Forbidden, NotFound, Unauthorized

        verify: Any = getattr(self.args, "ca", None) or os.environ.get("X509_CERT_DIR") or True
        try:
            r = requests.request(method, self.url + path, json=body, timeout=60, verify=verify,
                                 headers={"Authorization": f"Bearer {self.token}"})
        except requests.RequestException as err:
            raise _RemoteError(f"{self.url}: {type(err).__name__}: {err} (is `archive serve` "
                               "running? --url, --ca)") from err
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text[:200]
            err_type = {401: Unauthorized, 403: Forbidden}.get(r.status_code)
            if err_type:
                raise err_type(f"{self.url}{path}: {detail}")
            if r.status_code == 404:
                raise NotFound(path, detail)
            raise _RemoteError(f"{self.url}{path}: HTTP {r.status_code}: {detail}")
        return r.json()


class _RemoteError(ApplianceError):
    exit_code = Exit.REMOTE


def _offline(args: argparse.Namespace):
    """The archive itself (the server must be stopped: it holds the directory lock)."""
    return _archive(args, exclusive=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    from archive import admin

    wanted = args.paths
    if args.offline:
        a = _offline(args)
        try:
            a.start()
            res = admin.migrate(a, wanted)
            deadline = time.monotonic() + args.wait
            while time.monotonic() < deadline and a._migration_pending():
                time.sleep(0.2)
            res = admin.migrate(a, wanted)
            res["waiting"] = len(a._migration_candidates())
        finally:
            a.close()
    else:
        remote = _Remote(args)
        res = remote.call("POST", "/api/admin/migrate", {"paths": wanted})
        deadline = time.monotonic() + args.wait
        while args.wait and res["waiting"] and time.monotonic() < deadline:
            time.sleep(0.5)
            res = remote.call("POST", "/api/admin/migrate", {"paths": wanted})
    lines = [f"{res['waiting']} files wait for tape" + (" (writing now)" if res["waiting"] else "")]
    lines += [f"  {f.get('locality', 'ERROR'):<14} {f.get('tape_copies', '-')}/"
              f"{f.get('wanted_copies', '-')} copies  {f['path']}" + (f"  ({f['error']})"
                                                                      if "error" in f else "")
              for f in res["files"]]
    _print(args, res, "\n".join(lines))
    if any("error" in f for f in res["files"]):
        return Exit.NOT_FOUND
    return Exit.REMOTE if args.wait and res["waiting"] else 0


def cmd_evict(args: argparse.Namespace) -> int:
    from archive import admin

    if args.offline:
        a = _offline(args)
        try:
            res = admin.evict(a, args.paths)
        finally:
            a.close()
    else:
        res = _Remote(args).call("POST", "/api/admin/evict", {"paths": args.paths})
    _print(args, res, "\n".join(f"  {f['result']:<12} {f['path']}" + (f"  ({f['error']})" if
                                                                        "error" in f else "")
                                 for f in res["files"]) + f"\nevicted {res['evicted']} files")
    if any(f["result"] == "error" for f in res["files"]):
        return Exit.NOT_FOUND
    return 0


# -- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    # SUPPRESS: an option given before the command is not reset by the command's parser
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--config", "-c", help="YAML config (default $ARCHIVE_CONFIG)")
    common.add_argument("--root", help="archive directory (overrides config 'root')")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p = argparse.ArgumentParser(
        prog="archive",
        description="The Long Term Archive: tape is the primary store; users search the "
                    "catalog, stage files from tape to the disk cache (WLCG Tape REST API), and "
                    "download them over HTTPS/WebDAV (gfal2, davix, curl, rclone).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Any, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_, parents=[common])
        sp.set_defaults(func=func)
        return sp

    sp = add("serve", cmd_serve, "run the HTTP(S)/WebDAV + Tape REST server and the tape engine")
    sp.add_argument("--port", type=int, help="override server.port (0 = a free port)")
    sp = add("ingest", cmd_ingest, "copy local files into the archive (checksummed; FITS "
             "headers become searchable metadata); needs the server stopped")
    sp.add_argument("paths", nargs="+", metavar="PATH")
    sp.add_argument("--dest", required=True, help="archive collection to put them in, e.g. /lofar/L123")
    sp.add_argument("--owner", help="owner recorded in the catalog (default $USER)")
    sp.add_argument("--follow-symlinks", action="store_true",
                    help="ingest the targets of symbolic links (refused by default)")
    sp = add("ls", cmd_ls, "list a collection with sizes, adler32 and locality")
    sp.add_argument("path", nargs="?", default="/")
    sp = add("stat", cmd_stat, "one file: checksums, locality, tape copies, metadata")
    sp.add_argument("path")
    sp = add("stage", cmd_stage, "request files from tape to disk (the running server recalls)")
    sp.add_argument("paths", nargs="+", metavar="PATH")
    sp.add_argument("--lifetime", help="pin lifetime, ISO 8601 duration (default from config)")
    sp.add_argument("--owner")
    sp.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                    help="poll until the request completes (needs a running server)")
    sp = add("status", cmd_status, "state of a stage request")
    sp.add_argument("request_id")
    sp = add("release", cmd_release, "release the disk pins of a stage request")
    sp.add_argument("request_id")
    sp.add_argument("paths", nargs="*", metavar="PATH")
    cat = sub.add_parser("catalog", help="catalog maintenance: backup, rebuild from tapes",
                         parents=[common])
    csub = cat.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    sp = csub.add_parser("backup", help="consistent online copy of the SQLite catalog",
                         parents=[common])
    sp.add_argument("dest")
    sp.set_defaults(func=cmd_catalog_backup)
    sp = csub.add_parser("rebuild", help="reconstruct the catalog from the tapes alone",
                         parents=[common])
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--into", help="write the rebuilt catalog to this new SQLite file")
    g.add_argument("--replace", action="store_true",
                   help="replace the configured catalog (the old one is kept aside)")
    sp.set_defaults(func=cmd_catalog_rebuild)
    add("tapes", cmd_tapes, "cartridges: pool, records, bytes used")
    sp = add("drives", cmd_drives, "tape drives (configured, or live from a server with --url)")
    sp.add_argument("--url", help="base URL of a running archive server (live state: mounted "
                    "cartridge, operation, seconds left, queued reads)")
    _remote_options(sp, url=False)

    tok = sub.add_parser("token", help="bearer tokens: mint one with the server's key",
                         parents=[common])
    tsub = tok.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    sp = tsub.add_parser(
        "issue", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="mint a WLCG-profile JWT signed with the key of auth.token_keys",
        description="Mint a WLCG-profile bearer token (JWT) that this archive accepts, signed "
                    "with the config's key: an HS256 'secret', or the 'private_key_file' (PEM) "
                    "of an RS256/ES256 issuer. The token is verified as the server would before "
                    "it is printed (alone on stdout; --json adds the claims).",
        epilog="examples:\n"
               "  archive token issue --scope 'storage.read:/ storage.create:/scratch' "
               "--lifetime 1h\n"
               "  TOKEN=$(archive token issue --scope storage.stage:/lofar --subject bob "
               "--lifetime 2d)\n"
               "  curl --cacert ca.pem -H \"Authorization: Bearer $TOKEN\" "
               "https://lta.example:8443/lofar/a.fits")
    sp.add_argument("--scope", required=True,
                    help="space-separated storage.{read,create,modify,stage}:/PATH scopes "
                         "(paths relative to auth.token_base_path)")
    sp.add_argument("--lifetime", default="1h", help="1h, 30m, 2d, 3600 or PT1H (default 1h)")
    sp.add_argument("--subject", help="the token's sub: the identity recorded as owner "
                                      "(default $USER)")
    sp.add_argument("--issuer", help="which auth.token_keys issuer signs (default: the first "
                                     "with a signing key)")
    sp.add_argument("--audience", help="aud claim (default the first auth.token_audience)")
    sp.set_defaults(func=cmd_token_issue)

    ops = ("Operator actions (needs storage.modify:/). By default they talk to the running "
           "server's admin API at --url (default: the configured server address) with --token, "
           "$BEARER_TOKEN, or a 5-minute token minted with the config's signing key; "
           "--offline acts on the archive directory itself and needs the server stopped.")
    sp = add("migrate", cmd_migrate, "write files waiting for tape now (not by age or batch)")
    sp.description = ("Write every file that waits for tape now, whatever its age or the batch "
                      "size, and show the tape copies of PATHs. " + ops)
    sp.add_argument("paths", nargs="*", metavar="PATH", help="files whose state to show")
    sp.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                    help="poll until nothing waits (exit 9 if something still does)")
    _remote_options(sp)
    sp = add("evict", cmd_evict, "drop disk copies of files on tape: they become tape only")
    sp.description = ("Drop the disk-cache copies of PATHs that are safely on tape (every "
                      "configured copy) and not pinned by a stage request: they become tape "
                      "only (NEARLINE) without filling the cache. " + ops)
    sp.add_argument("paths", nargs="+", metavar="PATH")
    _remote_options(sp)
    return teach_exit_codes(p)


def _remote_options(sp: argparse.ArgumentParser, url: bool = True) -> None:
    if url:
        sp.add_argument("--url", help="base URL of the running server (default: the configured "
                                      "server address)")
        sp.add_argument("--offline", action="store_true",
                        help="act on the archive directory (server stopped)")
    sp.add_argument("--token", help="operator bearer token (default $BEARER_TOKEN, else one "
                                    "minted with the config's signing key)")
    sp.add_argument("--ca", help="CA bundle or directory that verifies the server (default "
                                 "$X509_CERT_DIR, else the system store)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("config", None), ("root", None), ("json", False), ("verbose", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    return run_command("archive", args)


if __name__ == "__main__":
    sys.exit(main())
