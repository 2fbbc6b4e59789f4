"""``dataclient``: get/put/ls/stat/rm/stage/status/release/sum and credential commands.

Every command accepts ``--json`` (one JSON document on stdout) and exits with a code scripts can
rely on (see ``EXIT_CODES``). Credentials are found or made before each remote command: a bearer
token if one is discoverable, otherwise an X.509 proxy, created or renewed from
``~/.globus/usercert.pem`` when needed. Secrets are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.cliutil import run_command, teach_exit_codes
from appliance.dataclient.config import Config, load_config
from appliance.dataclient.credentials import (
    CredentialStatus,
    ensure_credentials,
    new_proxy,
    passphrase_source,
)
from appliance.dataclient.errors import CredentialError, NoCredentials
from appliance.errors import ApplianceError, ConfigError, NotFoundError
from appliance.exitcodes import MEANING, Exit
from appliance.staging.bulk import StagingCopier
from appliance.staging.model import path_of
from appliance.transfer.checksum import ALGORITHMS, parse_expected
from appliance.transfer.credentials import token_locations
from appliance.transfer.engine import Copier, CopyJob, CopyOptions
from appliance.transfer.local import LocalBackend, local_path
from appliance.transfer.retry import RetryPolicy
from appliance.transfer.select import Backends, is_local, scheme_of

EXIT_CODES = {int(code): text for code, text in MEANING.items()}  # the product's one table

EPILOG = """\
destinations: a missing local destination directory is created (like mkdir -p); a copy lands
under a temporary name (.NAME.part) and is renamed only after its checksum matched; a partial
file is kept only where a later get can resume it.

credentials, looked up in this order before each remote command:
  1. a bearer token: $BEARER_TOKEN, the file $BEARER_TOKEN_FILE, $XDG_RUNTIME_DIR/bt_u<uid>,
     /tmp/bt_u<uid> (WLCG discovery; --no-token skips it; GridFTP never uses tokens)
  2. an X.509 proxy: $X509_USER_PROXY, else /tmp/x509up_u<uid> (proxy.path in the config);
     it does not follow $HOME: set X509_USER_PROXY to isolate one
  3. none valid: a proxy is made from ~/.globus/usercert.pem + userkey.pem (asks for the
     passphrase, or --passphrase-file), and renewed before it runs out

Targets are URLs (gsiftp://, davs://, https://, root://, file:///), local paths, or site aliases
from ~/.config/dataclient/config.yaml: 'lta:/obs/x.fits' expands to the URL of site 'lta'.
Examples:
  dataclient get lta:/obs/L1234/a.fits lta:/obs/L1234/b.fits ./data/
  dataclient put results.tar gsiftp://gridftp.example.org:2811/store/user/
  dataclient stage --wait lta:/obs/L1234/a.fits
  dataclient proxy-info --json
"""


class Out:
    """Writes either human lines or one JSON document."""

    def __init__(self, as_json: bool):
        self.as_json = as_json

    def emit(self, human: str, data: Any) -> None:
        if self.as_json:
            print(json.dumps(data, indent=2, default=str))
        elif human:
            print(human)


# -- shared set-up --------------------------------------------------------------------------------
def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    if args.ca_dir:
        cfg = Config(**{**cfg.__dict__, "ca_dir": args.ca_dir})
    return cfg


def _credentials(args: argparse.Namespace, cfg: Config) -> CredentialStatus:
    status = ensure_credentials(cfg, passphrase_source(args.passphrase_file),
                                use_token=not args.no_token, insecure=args.insecure)
    if status.kind in ("created-proxy", "renewed-proxy") and not args.json:
        left = int(status.proxy.seconds_left() // 60) if status.proxy else 0
        print(f"dataclient: {status.kind.replace('-', ' ')} {status.where} "
              f"({left // 60}h{left % 60:02d}m left)", file=sys.stderr)
    return status


def _backends(args: argparse.Namespace, cfg: Config, status: CredentialStatus,
              urls: list[str]) -> Backends:
    gridftp = [u for u in urls if scheme_of(u) in ("gsiftp", "ftp+gsi")]
    if gridftp and status.credentials.proxy is None:  # GridFTP knows no tokens: say so before Globus does
        raise NoCredentials(
            f"{gridftp[0]} needs an X.509 proxy: none at {cfg.proxy.path} ($X509_USER_PROXY, else "
            f"/tmp/x509up_u<uid>), and no {cfg.proxy.cert} + {cfg.proxy.key} to make one from")
    prefer: dict[str, str] = {}
    for u in urls:
        site = cfg.site_for(u)
        if site and site.backend:
            prefer[scheme_of(u)] = site.backend
    if getattr(args, "backend", "auto") != "auto":
        prefer = {"*": args.backend}
    return Backends(status.credentials, prefer, gfal_streams=getattr(args, "streams", 1))


def _copier(args: argparse.Namespace, cfg: Config, status: CredentialStatus, urls: list[str]) -> Copier:
    retries = args.retries if args.retries is not None else cfg.retries
    options = CopyOptions(
        checksum=None if args.no_verify else (args.checksum_type or cfg.checksum),
        retry=RetryPolicy(attempts=max(1, retries), initial=args.retry_delay),
        parallel=args.parallel or cfg.parallel,
        progress=not (args.no_progress or args.json),
        fsync=not args.no_fsync and cfg.fsync,
    )
    return Copier(status.credentials, options, _backends(args, cfg, status, urls))


def _remote(args: argparse.Namespace, url: str, cfg: Config):
    status = _credentials(args, cfg)
    return _backends(args, cfg, status, [url]).for_url(url), status


# -- transfer commands ----------------------------------------------------------------------------
def _plan(sources: list[str], dst: str, put: bool, expected: str | None) -> list[CopyJob]:
    if expected and len(sources) > 1:
        raise ConfigError("--checksum ALGO:VALUE applies to a single source file")
    if expected:
        parse_expected(expected)  # fail early on a malformed value
    jobs = []
    many = len(sources) > 1
    for src in sources:
        name = src.rstrip("/").rsplit("/", 1)[-1]
        if put:
            if many or dst.endswith("/"):
                target = dst.rstrip("/") + "/" + Path(src).name
            else:
                target = dst
        else:
            d = local_path(dst)
            if many and not (d.is_dir() or dst.endswith("/")):
                raise ConfigError(f"{dst}: several sources need a destination directory")
            target = str(d / name) if (d.is_dir() or dst.endswith("/")) else str(d)
        jobs.append(CopyJob(src, target, expected))
    return jobs


def cmd_get(args: argparse.Namespace) -> int:
    cfg = _config(args)
    sources = [cfg.expand(s) for s in args.sources]
    dst = cfg.expand(args.dest)
    if not is_local(dst):
        raise ConfigError(f"{dst}: 'get' writes to a local path; use 'put' to upload")
    status = _credentials(args, cfg)
    copier = _copier(args, cfg, status, sources)
    jobs = _plan(sources, dst, put=False, expected=args.checksum)
    if args.no_stage:
        result = copier.copy_many(jobs)
    else:
        result = StagingCopier(copier, status.credentials, lifetime=args.lifetime,
                               timeout=args.stage_timeout).copy(jobs)
    return _finish(args, result)


def cmd_put(args: argparse.Namespace) -> int:
    cfg = _config(args)
    dst = cfg.expand(args.dest)
    if is_local(dst):
        raise ConfigError(f"{dst}: 'put' uploads to a URL; use 'get' or cp for local copies")
    for s in args.sources:
        if Path(s).is_dir():
            raise ConfigError(f"{s}: is a directory; 'put' uploads files (name them: {s.rstrip('/')}/*)")
        if not Path(s).is_file():
            raise NotFoundError(f"{s}: no such local file")
    status = _credentials(args, cfg)
    copier = _copier(args, cfg, status, [dst])
    return _finish(args, copier.copy_many(_plan(args.sources, dst, put=True, expected=args.checksum)))


def _finish(args: argparse.Namespace, result) -> int:
    """--json: one document. Otherwise the copies that worked and the summary on stdout, and
    each failure once, as one line on stderr (a lone failed copy prints nothing on stdout)."""
    if args.json:
        Out(True).emit("", result.to_json())
        return result.exit_code
    if result.ok or len(result.results) > 1:
        done = [r.report() for r in result.results if r.ok]
        print("\n".join([*done, *result.notes, result.report().splitlines()[-1]]), flush=True)
    for r in result.failed:
        print(f"dataclient: error: {r.error}", file=sys.stderr)
    return result.exit_code


def cmd_ls(args: argparse.Namespace) -> int:
    cfg = _config(args)
    url = cfg.expand(args.url)
    backend = LocalBackend() if is_local(url) else _remote(args, url, cfg)[0]
    items = backend.listdir(url)
    lines = [f"{'d' if i.is_dir else '-'} {i.size:>14} {i.name}" if args.long else i.name for i in items]
    Out(args.json).emit("\n".join(lines), [i.to_json() for i in items])
    return 0


def cmd_stat(args: argparse.Namespace) -> int:
    cfg = _config(args)
    url = cfg.expand(args.url)
    backend = LocalBackend() if is_local(url) else _remote(args, url, cfg)[0]
    st = backend.stat(url)
    Out(args.json).emit(f"{st.url}\n  size: {st.size}\n  type: {'directory' if st.is_dir else 'file'}",
                        st.to_json())
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    cfg = _config(args)
    urls = [cfg.expand(u) for u in args.urls]
    status = _credentials(args, cfg)
    backends = _backends(args, cfg, status, urls)
    for u in urls:
        backends.for_url(u).delete(u)
    Out(args.json).emit("\n".join(f"removed {u}" for u in urls), {"ok": True, "removed": urls})
    return 0


def cmd_sum(args: argparse.Namespace) -> int:
    cfg = _config(args)
    url = cfg.expand(args.url)
    algo = args.algorithm.lower()
    backend = LocalBackend() if is_local(url) else _remote(args, url, cfg)[0]
    value = backend.checksum(url, algo)
    if value is None:
        from appliance.transfer.errors import ChecksumUnavailable
        raise ChecksumUnavailable(url, algo)
    Out(args.json).emit(f"{url} {algo}:{value}", {"url": url, "algorithm": algo, "checksum": value})
    return 0


# -- staging commands -----------------------------------------------------------------------------
def _staging_client(args: argparse.Namespace, cfg: Config, any_url: str | None):
    from appliance.staging.client import StagingClient

    server = getattr(args, "server", None)
    if server is None and getattr(args, "site", None):
        if args.site not in cfg.sites:
            raise ConfigError(f"unknown site '{args.site}'")
        server = cfg.sites[args.site].url
    server = server or any_url or (cfg.sites[cfg.default_site].url if cfg.default_site else None)
    if not server:
        raise ConfigError("which storage? give --site NAME or --server URL (or set default_site)")
    server = cfg.expand(server)
    return StagingClient(server, _credentials(args, cfg).credentials)


def cmd_stage(args: argparse.Namespace) -> int:
    cfg = _config(args)
    urls = [cfg.expand(u) for u in args.urls]
    client = _staging_client(args, cfg, urls[0])
    rid = client.stage([path_of(u) for u in urls], args.lifetime)
    if not args.wait:
        Out(args.json).emit(rid, {"requestId": rid})
        return 0
    st = client.wait(rid, args.timeout, raise_on_failure=False)
    Out(args.json).emit(st.report(), st.to_json())
    return 0 if st.ok else Exit.REMOTE


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _config(args)
    st = _staging_client(args, cfg, None).status(args.request_id)
    Out(args.json).emit(st.report(), st.to_json())
    return 0 if st.ok or not st.done else Exit.REMOTE


def cmd_release(args: argparse.Namespace) -> int:
    cfg = _config(args)
    urls = [cfg.expand(u) for u in args.urls]
    client = _staging_client(args, cfg, urls[0] if urls else None)
    paths = [path_of(u) for u in urls] or [f.path for f in client.status(args.request_id).files]
    client.release(args.request_id, paths)
    Out(args.json).emit(f"released {len(paths)} file(s) of request {args.request_id}",
                        {"ok": True, "requestId": args.request_id, "paths": paths})
    return 0


# -- credential commands --------------------------------------------------------------------------
def cmd_proxy_init(args: argparse.Namespace) -> int:
    cfg = _config(args)
    p = cfg.proxy
    p = type(p)(path=Path(args.out) if args.out else p.path, cert=Path(args.cert) if args.cert else p.cert,
                key=Path(args.key) if args.key else p.key, lifetime_hours=args.hours or p.lifetime_hours,
                min_remaining_minutes=p.min_remaining_minutes)
    cfg = Config(**{**cfg.__dict__, "proxy": p})
    for f in (p.cert, p.key):
        if not f.is_file():
            raise CredentialError(f"{f}: not found (user certificate and key are needed for a proxy)")
    info = new_proxy(cfg, passphrase_source(args.passphrase_file), args.hours)
    Out(args.json).emit(f"created {info.path}\n{info.report()}", info.to_json())
    return 0


def cmd_proxy_info(args: argparse.Namespace) -> int:
    cfg = _config(args)
    path = Path(args.file) if args.file else cfg.proxy.path
    if not path.is_file():
        raise CredentialError(f"{path}: no proxy (create one with 'dataclient proxy-init')")
    from appliance.dataclient.proxy import read_proxy

    info = read_proxy(path)
    Out(args.json).emit(info.report(), info.to_json())
    return 0 if info.seconds_left() > 0 else Exit.PERMISSION


def cmd_login(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
        if not token:
            raise CredentialError(f"{args.token_file}: empty token file")
        target = token_locations({k: v for k, v in os.environ.items() if k != "BEARER_TOKEN_FILE"})[0]
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        Out(args.json).emit(f"token stored in {target} (WLCG bearer token discovery location)",
                            {"ok": True, "kind": "token", "where": str(target)})
        return 0
    status = _credentials(args, cfg)
    if status.kind == "none":
        from appliance.dataclient.errors import NoCredentials
        raise NoCredentials(f"no token, no proxy at {cfg.proxy.path}, no {cfg.proxy.cert}")
    human = f"using {status.kind.replace('-', ' ')}" + (f" from {status.where}" if status.where else "")
    if status.proxy:
        human += "\n" + status.proxy.report()
    Out(args.json).emit(human, {"ok": True, **status.to_json()})
    return 0


# -- parser ---------------------------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    g.add_argument("--config", help="configuration file (default ~/.config/dataclient/config.yaml)")
    g.add_argument("--ca-dir", help="trusted CA directory (default $X509_CERT_DIR or "
                   "/etc/grid-security/certificates)")
    g.add_argument("--passphrase-file", help="read the user key passphrase from this file "
                   "instead of prompting")
    g.add_argument("--no-token", action="store_true", help="ignore bearer tokens, use X.509")
    g.add_argument("--insecure", action="store_true", help="do not verify server certificates "
                   "(testing only)")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _transfer_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("transfer options")
    g.add_argument("--parallel", "-P", type=int, help="files copied at once (default 4)")
    g.add_argument("--checksum-type", choices=ALGORITHMS, help="checksum compared end to end "
                   "(default adler32, as in WLCG)")
    g.add_argument("--checksum", metavar="ALGO:VALUE", help="expected checksum of the single source "
                   "(e.g. from a catalog); overrides asking the server")
    g.add_argument("--no-verify", action="store_true", help="copy without checksum verification")
    g.add_argument("--retries", type=int, help="attempts per file (default 4)")
    g.add_argument("--retry-delay", type=float, default=1.0, help="first backoff delay in s (doubles)")
    g.add_argument("--backend", choices=("auto", "gfal2", "globus", "http"), default="auto",
                   help="force a transfer backend (default: by URL scheme)")
    g.add_argument("--streams", type=int, default=1, help="parallel TCP streams (GridFTP)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--no-fsync", action="store_true", help="do not wait for the data to reach the "
                   "disk before the final rename (faster; a crash may leave a damaged file)")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="dataclient", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Copy data to and from the archive and grid storage, with checksums verified, "
                    "staging from tape handled and credentials (token or X.509 proxy) managed "
                    "for you.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, func, help: str, **kw) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter, **kw)
        p.set_defaults(func=func)
        return p

    p = add("get", cmd_get, "download files (staging them from tape first when needed)")
    p.add_argument("sources", nargs="+", metavar="SRC", help="URL or site:path")
    p.add_argument("dest", metavar="DST", help="local file or directory")
    _transfer_options(p)
    p.add_argument("--no-stage", action="store_true", help="do not ask the Tape REST API")
    p.add_argument("--lifetime", default="PT1H", help="pin lifetime of staged files (ISO 8601)")
    p.add_argument("--stage-timeout", type=float, default=6 * 3600, help="give up staging after s")

    p = add("put", cmd_put, "upload local files (written under a temporary name, renamed when "
            "the checksum matched)")
    p.add_argument("sources", nargs="+", metavar="SRC", help="local files")
    p.add_argument("dest", metavar="DST", help="URL (ending in / for a directory) or site:path")
    _transfer_options(p)

    p = add("ls", cmd_ls, "list a directory")
    p.add_argument("url")
    p.add_argument("-l", "--long", action="store_true", help="type and size too")
    p.add_argument("--backend", choices=("auto", "gfal2", "globus", "http"), default="auto")
    p = add("stat", cmd_stat, "size and type of a file")
    p.add_argument("url")
    p.add_argument("--backend", choices=("auto", "gfal2", "globus", "http"), default="auto")
    p = add("rm", cmd_rm, "delete files")
    p.add_argument("urls", nargs="+")
    p.add_argument("--backend", choices=("auto", "gfal2", "globus", "http"), default="auto")
    p = add("sum", cmd_sum, "checksum as the storage reports it (no download)")
    p.add_argument("url")
    p.add_argument("algorithm", nargs="?", default="adler32", choices=ALGORITHMS)
    p.add_argument("--backend", choices=("auto", "gfal2", "globus", "http"), default="auto")

    p = add("stage", cmd_stage, "ask for files on disk (WLCG Tape REST API); prints the request id")
    p.add_argument("urls", nargs="+")
    p.add_argument("--lifetime", default=None, help="pin lifetime (ISO 8601, e.g. PT1H, P2D)")
    p.add_argument("--wait", action="store_true", help="poll until all files are online or failed")
    p.add_argument("--timeout", type=float, default=6 * 3600, help="with --wait: give up after s")
    p = add("status", cmd_status, "state of a stage request")
    p.add_argument("request_id")
    p.add_argument("--site", help="site alias of the storage")
    p.add_argument("--server", help="any URL on the storage")
    p = add("release", cmd_release, "release the pins of a stage request (all files or those named)")
    p.add_argument("request_id")
    p.add_argument("urls", nargs="*")
    p.add_argument("--site", help="site alias of the storage")
    p.add_argument("--server", help="any URL on the storage")

    p = add("proxy-init", cmd_proxy_init, "create an RFC 3820 proxy from your user certificate")
    p.add_argument("--hours", type=float, help="lifetime (default 12, never beyond the certificate)")
    p.add_argument("--out", help="proxy file (default $X509_USER_PROXY or /tmp/x509up_u<uid>)")
    p.add_argument("--cert", help="user certificate (default ~/.globus/usercert.pem)")
    p.add_argument("--key", help="user key (default ~/.globus/userkey.pem)")
    p = add("proxy-info", cmd_proxy_info, "subject, issuer and time left of the proxy")
    p.add_argument("--file", help="proxy file to inspect")
    p = add("login", cmd_login, "make sure credentials are ready (create or renew the proxy), or "
            "store a bearer token for later commands")
    p.add_argument("--token-file", help="store this token where WLCG clients look for it")
    return teach_exit_codes(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    def json_error(err: ApplianceError) -> None:
        print(json.dumps({"ok": False, "error": str(err), "error_type": type(err).__name__,
                          "exit_code": err.exit_code}))

    return run_command("dataclient", args, on_error=json_error if args.json else None)


if __name__ == "__main__":
    sys.exit(main())
