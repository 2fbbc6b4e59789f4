"""Archive inputs of a batch: list an archive collection, and bring every tape-resident item
online in ONE stage request per storage server before any run starts, so the archive recalls
in tape order (its scheduler sorts the request by cartridge and position) instead of mounting
a cartridge per item as each run would fetch its input."""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Callable
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

from appliance.staging.bulk import TAPE_SCHEMES
from appliance.staging.errors import TapeApiUnavailable
from appliance.staging.model import path_of, server_root
from appliance.transfer.credentials import Credentials
from appliance.transfer.select import scheme_of


def archive_query(collection: str, match: str = "*", credentials: Credentials | None = None) -> list[str]:
    """Every file under an archive collection (recursively), e.g. ``davs://host/projects/X/``;
    with a query string, the archive's catalog search below that collection instead, e.g.
    ``davs://host/projects/?project=X&instrument=HBA`` (the parameters of ``/api/catalog/search``:
    project, observation, instrument, telescope, object, cone, start, end ...)."""
    from appliance.transfer.select import Backends

    parts = urlsplit(collection)
    if parts.query:
        return _catalog_query(parts, match, credentials)
    backend = Backends(credentials or Credentials.discover()).for_url(collection)
    found: list[str] = []
    todo = [collection.rstrip("/") + "/"]
    while todo:
        for entry in backend.listdir(todo.pop()):
            url = entry.url  # on the collection's scheme and server (the PROPFIND parser's rule)
            if entry.is_dir:
                todo.append(url.rstrip("/") + "/")
            elif fnmatch.fnmatch(entry.name, match):
                found.append(url)
    return sorted(found)


def _catalog_query(parts: SplitResult, match: str, credentials: Credentials | None) -> list[str]:
    """The files the archive's catalog finds for the query, as URLs on the caller's scheme."""
    from appliance.staging.catalog import search

    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    server = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    items = search(server, parts.path or "/", params, credentials)
    return sorted(urlunsplit((parts.scheme, parts.netloc, i["path"], "", "")) for i in items
                  if fnmatch.fnmatch(i["path"].rsplit("/", 1)[-1], match))


def _client(server: str, credentials: Credentials | None,
            client_factory: Callable[[str], object] | None) -> object:
    """The server's Tape REST client (``client_factory`` for tests with a fake server)."""
    if client_factory is not None:
        return client_factory(server)
    from appliance.staging.client import StagingClient

    return StagingClient(server, credentials or Credentials.discover())


def stage_all(uris: list[str], credentials: Credentials | None = None, lifetime: str = "PT6H",
              timeout: float = 6 * 3600.0, client_factory: Callable[[str], object] | None = None,
              ) -> dict[str, str]:
    """One stage request per server for every archive URI; returns {server: request id}."""
    by_server: dict[str, list[str]] = defaultdict(list)
    for uri in uris:
        if scheme_of(uri) in TAPE_SCHEMES:
            by_server[server_root(uri)].append(path_of(uri))
    requests: dict[str, str] = {}
    for server, paths in by_server.items():
        client = _client(server, credentials, client_factory)
        try:
            rid = client.stage(paths, lifetime)  # type: ignore[attr-defined]
        except TapeApiUnavailable:
            continue  # a disk-only server: nothing to stage
        client.wait(rid, timeout=timeout)  # type: ignore[attr-defined]
        requests[server] = rid
    return requests


def release_all(requests: dict[str, str], credentials: Credentials | None = None,
                client_factory: Callable[[str], object] | None = None) -> list[str]:
    """Delete the batch's stage requests once every run has read its input: the archive may
    then evict the staged files again instead of pinning them for the whole lifetime. Returns
    one line per request that could not be released (the pins then expire with the lifetime)."""
    from appliance.staging.errors import StagingError

    problems = []
    for server, rid in requests.items():
        client = _client(server, credentials, client_factory)
        try:
            client.delete(rid)  # type: ignore[attr-defined]
        except (StagingError, OSError) as err:
            problems.append(f"{server}: stage request {rid} not released: {err}")
    return problems
