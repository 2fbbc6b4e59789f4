"""Recipe inputs read from the archive and grid storage: ``lta://``, ``davs://``, ``https://``,
``gsiftp://``.

Wiring (used by ``appliance.inputs.registry``)::

    from appliance.inputs.remote import remote_resolvers
    for resolver in remote_resolvers(settings.resolvers):   # a plain dict, may be empty
        registry.add(resolver)

``settings.resolvers`` keys (all optional)::

    lta_url: davs://lta.example.org:8443     # lta://obs/x.fits -> davs://lta.example.org:8443/obs/x.fits
                                             # (default: site 'lta' of the dataclient config)
    dataclient_config: ~/.config/dataclient/config.yaml   # sites, ca_dir, proxy settings
    ca_dir: /etc/grid-security/certificates
    passphrase_file: ~/.globus/passphrase    # only if a proxy must be made from an encrypted key
    backend: auto                            # auto | http | gfal2
    retries: 4
    parallel: 4
    stage_timeout: 21600                     # seconds to wait for tape recalls
    stage_lifetime: PT1H                     # pin lifetime asked for staged files

A fetch: expand the URI, find credentials like ``dataclient`` does (token, else proxy, created or
renewed from the user certificate), stage from tape if ``archiveinfo`` says so, copy with an end-
to-end checksum (the recipe lock's sha256 when known, else the storage's adler32) into a temporary
file under the store, then stream it into ``ContentStore.writer(expected_sha256)``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance.dataclient.config import Config, load_config
from appliance.dataclient.credentials import ensure_credentials, passphrase_source
from appliance.errors import InputError
from appliance.inputs.base import ResolvedInput
from appliance.staging.bulk import StagingCopier
from appliance.store import ContentStore
from appliance.transfer.checksum import BLOCK
from appliance.transfer.engine import Copier, CopyJob, CopyOptions
from appliance.transfer.retry import RetryPolicy
from appliance.transfer.select import Backends


class RemoteResolver:
    """One resolver for every remote scheme; holds settings only, credentials are found per fetch."""

    schemes = ("lta", "davs", "https", "gsiftp")

    def __init__(self, options: dict[str, Any] | None = None):
        self.options = dict(options or {})
        cfg_file = self.options.get("dataclient_config")
        self.config: Config = load_config(os.path.expanduser(cfg_file) if cfg_file else None)
        if self.options.get("ca_dir"):
            self.config = Config(**{**self.config.__dict__, "ca_dir": str(self.options["ca_dir"])})

    def url_of(self, uri: str) -> str:
        parts = urlsplit(uri)
        if parts.scheme != "lta":
            return uri
        base = self.options.get("lta_url") or (self.config.sites["lta"].url if "lta" in self.config.sites else None)
        if not base:
            raise InputError(f"input {uri}: lta:// needs 'resolvers: {{lta_url: davs://host:port}}' in the "
                             "appliance settings or a site 'lta' in the dataclient config")
        path = "/".join(p for p in (parts.netloc, parts.path.lstrip("/")) if p)
        if ".." in path.split("/"):
            raise InputError(f"input {uri}: '..' is not allowed in archive paths")
        return f"{base.rstrip('/')}/{path}"

    def _copier(self) -> tuple[Copier, Any]:
        status = ensure_credentials(self.config, passphrase_source(self.options.get("passphrase_file")),
                                    insecure=bool(self.options.get("insecure", False)))
        backend = self.options.get("backend", "auto")
        prefer = {"*": backend} if backend != "auto" else {}
        options = CopyOptions(checksum=self.config.checksum,
                              retry=RetryPolicy(attempts=int(self.options.get("retries", self.config.retries))),
                              parallel=int(self.options.get("parallel", self.config.parallel)))
        return Copier(status.credentials, options, Backends(status.credentials, prefer)), status.credentials

    def fetch(self, uri: str, store: ContentStore, expected_sha256: str | None = None) -> ResolvedInput:
        url = self.url_of(uri)
        copier, creds = self._copier()
        work = store.root / "tmp" / f"fetch-{secrets.token_hex(6)}"
        work.mkdir(parents=True)
        try:
            dest = work / (Path(urlsplit(url).path).name or "input")
            job = CopyJob(url, str(dest), f"sha256:{expected_sha256}" if expected_sha256 else None)
            stager = StagingCopier(copier, creds, lifetime=self.options.get("stage_lifetime", "PT1H"),
                                   timeout=float(self.options.get("stage_timeout", 6 * 3600)))
            result = stager.copy([job]).results[0]
            result.raise_for_error()
            with store.writer(expected_sha256, what=uri) as w, open(dest, "rb") as f:
                while chunk := f.read(BLOCK):
                    w.write(chunk)
            obj = w.result  # type: ignore[attr-defined]
            return ResolvedInput(uri, obj.sha256, obj.size, obj.path)
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(work)

    def checksum(self, uri: str, store: ContentStore) -> ResolvedInput:
        return self.fetch(uri, store)

    def download(self, uri: str, dest: Path) -> None:
        """``uri`` to the local file ``dest`` (staged from tape first if need be), checksum verified."""
        copier, creds = self._copier()
        stager = StagingCopier(copier, creds, lifetime=self.options.get("stage_lifetime", "PT1H"),
                               timeout=float(self.options.get("stage_timeout", 6 * 3600)))
        stager.copy([CopyJob(self.url_of(uri), str(dest))]).results[0].raise_for_error()

    def upload(self, src: Path, uri: str) -> str:
        """The local file ``src`` to ``uri``, checksum verified; returns the URL written."""
        copier, _ = self._copier()
        url = self.url_of(uri)
        copier.copy(str(src), url).raise_for_error()
        return url


def remote_resolvers(settings: dict[str, Any] | None = None) -> list[RemoteResolver]:
    """The resolvers for remote schemes, configured from ``Settings.resolvers``."""
    return [RemoteResolver(settings)]
