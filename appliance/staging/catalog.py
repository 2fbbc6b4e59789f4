"""The archive's catalog search (``/api/catalog/search``), beside its Tape REST client: every
item below a prefix that matches the search parameters (project, observation, instrument,
telescope, object, cone, start, end ...), all pages (keyset paging by path).

Used by ``appliance batch --archive-query URL?SEARCH`` and the pipeline's ``match`` stage.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from appliance.exitcodes import Exit
from appliance.staging.errors import StagingError
from appliance.transfer.credentials import Credentials


class CatalogError(StagingError):
    """The catalog answered with an error (or not at all); ``where`` is the URL."""


class CatalogUsage(CatalogError):
    exit_code = Exit.USAGE


def https_base(url: str) -> str:
    """The server's HTTPS base URL from ``https://``/``davs://`` (``http``/``dav`` stay plain)."""
    u = urlsplit(url.rstrip("/"))
    scheme = {"davs": "https", "dav": "http"}.get(u.scheme, u.scheme)
    if scheme not in ("https", "http") or not u.netloc:
        raise CatalogUsage(url, "expected the archive's https://HOST:PORT (or davs://) URL")
    return urlunsplit((scheme, u.netloc, "", "", ""))


def search(url: str, prefix: str, params: dict[str, str], credentials: Credentials | None = None,
           page: int = 1000) -> list[dict[str, Any]]:
    """Every catalog item below ``prefix`` that matches ``params`` (all pages)."""
    import requests

    from appliance.transfer.http import make_session

    base = https_base(url) + "/api/catalog/search"
    session = make_session(credentials or Credentials.discover())
    out: list[dict[str, Any]] = []
    query = {"prefix": "/" + prefix.strip("/"), "limit": str(page), **params}
    while True:
        try:
            # %20 for a space (what every client of a path-like query understands)
            r = session.get(base, params=urlencode(query, quote_via=quote), timeout=60)
        except requests.RequestException as err:
            raise CatalogError(base, f"catalog search failed: {err}") from err
        if r.status_code != 200:
            detail = r.text.strip().replace("\n", " ")[:300]
            problem = CatalogError(base, f"catalog search answered {r.status_code}: {detail}")
            if r.status_code in (401, 403):
                problem.exit_code = Exit.PERMISSION
            elif r.status_code == 400:
                problem.exit_code = Exit.USAGE
            raise problem
        body = r.json()
        out.extend(body.get("items", []))
        if not body.get("next"):
            return out
        query["after"] = body["next"]
