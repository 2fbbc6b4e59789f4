"""The ``match`` selection against ALMA's own archive, through astroquery (needs the network).

The selection (cone, project, band, dates) becomes one ADQL query on ALMA's ObsCore table
(``ivoa.obscore``) sent with ``astroquery.alma.Alma.query_tap``; the rows come back parsed by
astroquery/pyvo from the service's VOTable. Only the search is here: downloading ALMA products
(``Alma.download_files``) needs an ALMA account for proprietary data and a network this
appliance's tests never have. Tests feed a recorded TAP answer from a server on 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.pipeline.errors import PipelineError
from appliance.pipeline.match import Selection

COLUMNS = ("obs_id", "member_ous_uid", "proposal_id", "target_name", "s_ra", "s_dec", "band_list",
           "t_min", "access_url", "obs_publisher_did")


def _iso_to_mjd(text: str) -> float:
    from astropy.time import Time

    return float(Time(text).mjd)


def adql(sel: Selection, top: int | None = None) -> str:
    """The ADQL query for a selection (string values quoted, ADQL style)."""
    where = []
    if sel.cone:
        ra, dec, r = sel.cone
        where.append(f"INTERSECTS(CIRCLE('ICRS',{ra!r},{dec!r},{r!r}),s_region)=1")
    if sel.project:
        where.append("proposal_id = '{}'".format(sel.project.replace("'", "''")))
    if sel.band is not None:
        where.append(f"band_list LIKE '%{int(sel.band)}%'")
    if sel.start:
        where.append(f"t_min >= {_iso_to_mjd(sel.start)!r}")
    if sel.end:
        where.append(f"t_min < {_iso_to_mjd(sel.end)!r}")
    head = f"SELECT TOP {int(top)} " if top else "SELECT "
    return head + ", ".join(COLUMNS) + " FROM ivoa.obscore" + (" WHERE " + " AND ".join(where) if where else "")


@dataclass
class AlmaRows:
    query: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"query": self.query, "count": len(self.rows), "rows": self.rows}

    def report(self) -> str:
        lines = [f"ALMA: {len(self.rows)} row(s) for {self.query}"]
        lines += [f"  {r.get('member_ous_uid')} {r.get('proposal_id')} {r.get('target_name')} "
                  f"band {r.get('band_list')}" for r in self.rows]
        return "\n".join(lines)


def _plain(v: Any) -> Any:
    import numpy as np

    if np.ma.is_masked(v):
        return None
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def alma_search(sel: Selection, archive_url: str | None = None, top: int | None = None) -> AlmaRows:
    """Run the selection on ALMA's TAP service (``archive_url``: a mirror, default astroquery's)."""
    from astroquery.alma import AlmaClass

    alma = AlmaClass()
    if archive_url:
        alma.archive_url = archive_url.rstrip("/")  # a mirror is used as is (no disambiguation)
    query = adql(sel, top)
    try:
        table = alma.query_tap(query).to_table()
    except Exception as err:  # noqa: BLE001 - pyvo/requests errors: one line naming the service
        raise PipelineError(archive_url or alma.archive_url, f"ALMA TAP query failed: {err}") from err
    rows = [{c: _plain(row[c]) for c in table.colnames} for row in table]
    return AlmaRows(query, rows)
