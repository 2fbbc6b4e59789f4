"""The query suite: the same science queries on the plain reference tables and, chunk by chunk with
the results merged the way Qserv's czar merges them, on the per-chunk worker tables.

Results must be identical, not close. Two choices make that possible:

* every floating expression is evaluated by MariaDB from the same stored doubles with the same
  SQL on both sides, so per-row values are bit-identical;
* aggregated floating sums (shear profiles) are summed as ``DECIMAL(40,20)`` of the per-row
  double; decimal addition is exact, so the order of summation (one table vs. per-chunk partial
  sums added in Python with 100-digit precision) cannot change the result.

Angular separations use an inline haversine expression (``angsep_sql``) because the plain MariaDB
has no scisql UDFs; on a real Qserv the same queries would use ``scisql_angSep``.

The near-neighbour query joins each chunk table with itself plus its ``FullOverlap`` table per
sub-chunk, exactly like Qserv's sub-chunked near-neighbour queries, so a missing overlap row
changes the answer. Any difference is reported with the query, and the rows found on one side only.
"""

from __future__ import annotations

import decimal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.qserv.chunker import Chunker
from appliance.qserv.errors import PartitionConfigError
from appliance.qserv.load import CHUNK_TABLE_RE, DbConfig, chunk_table_name, ident

NJY_ZP = 31.4


def angsep_sql(ra1: str, dec1: str, ra2: str, dec2: str) -> str:
    """Haversine angular separation in degrees, as SQL (mirrors generate.angular_separation)."""
    return (
        f"DEGREES(2*ASIN(SQRT(POW(SIN(RADIANS({dec1}-{dec2})/2),2)"
        f"+COS(RADIANS({dec2}))*COS(RADIANS({dec1}))*POW(SIN(RADIANS({ra1}-{ra2})/2),2))))"
    )


def mag_sql(flux: str) -> str:
    return f"(-2.5*LOG10({flux})+{NJY_ZP})"


@dataclass(frozen=True)
class SuiteParams:
    """Parameters of the science queries; the defaults fit ``generate``'s default field."""

    ra: float = 0.25
    dec: float = -30.0
    cone_radius: float = 0.1  # deg
    r_max: float = 24.0  # magnitude cut
    gr_min: float = 0.8  # red-sequence colour window
    gr_max: float = 1.3
    shear_bin: float = 0.04  # deg
    shear_bins: int = 10
    pair_radius_arcsec: float = 3.0
    object_table: str = "Object"
    source_table: str = "Source"


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    sql: Callable[[dict[str, str]], str]  # table-name mapping -> SQL
    tables: tuple[str, ...]  # logical tables needed: "Object", "Source", "Overlap"
    merge: str = "union"  # union: concatenate rows; sum: group on `keys` and add the rest
    keys: int = 0
    region: tuple[float, float, float] | None = None  # (ra, dec, radius) for chunk pruning
    post: Callable[[list[tuple]], list[tuple]] | None = None


def build_suite(p: SuiteParams) -> list[Query]:
    sep0 = angsep_sql("coord_ra", "coord_dec", f"({p.ra!r})", f"({p.dec!r})")
    r_flux = 10 ** (-0.4 * (p.r_max - NJY_ZP))
    gr = f"({mag_sql('g_psfFlux')}-{mag_sql('r_psfFlux')})"
    east = f"(SIN(RADIANS(coord_ra-({p.ra!r})))*COS(RADIANS(coord_dec)))"
    north = (
        f"(COS(RADIANS({p.dec!r}))*SIN(RADIANS(coord_dec))"
        f"-SIN(RADIANS({p.dec!r}))*COS(RADIANS(coord_dec))*COS(RADIANS(coord_ra-({p.ra!r}))))"
    )
    sep_o = angsep_sql("o.coord_ra", "o.coord_dec", f"({p.ra!r})", f"({p.dec!r})")
    r_pair = p.pair_radius_arcsec / 3600.0
    shear_r = p.shear_bin * p.shear_bins
    bands = ("u", "g", "r", "i", "z")

    def detections(t):
        return " UNION ALL ".join(
            f"SELECT '{b}' AS band, COUNT(*) FROM {t['Object']} WHERE {b}_psfFlux/{b}_psfFluxErr > 5"
            for b in bands
        )

    def shear(t):
        return (
            "SELECT bin, COUNT(*), "
            "SUM(CAST(-(e1*COS(2*phi)+e2*SIN(2*phi)) AS DECIMAL(40,20))), "
            "SUM(CAST(e1*SIN(2*phi)-e2*COS(2*phi) AS DECIMAL(40,20))), "
            "SUM(CAST(SQRT(e1*e1+e2*e2) AS DECIMAL(40,20))) FROM ("
            f"SELECT FLOOR({sep0}/{p.shear_bin!r}) AS bin, "
            "(shape_xx-shape_yy)/(shape_xx+shape_yy) AS e1, 2*shape_xy/(shape_xx+shape_yy) AS e2, "
            f"ATAN2({north}, {east}) AS phi FROM {t['Object']} "
            f"WHERE {sep0} < {shear_r!r} AND NOT shape_flag AND shape_xx+shape_yy > 0.35 "
            f"AND r_psfFlux > {10 ** (-0.4 * (25.5 - NJY_ZP))!r} AND NOT r_psfFlux_flag"
            ") AS g GROUP BY bin"
        )

    def shear_post(rows):
        out = []
        with decimal.localcontext() as ctx:
            ctx.prec = 30
            for b, n, st, sx, se in sorted(rows):
                n = int(n)
                out.append((int(b), n, st, sx, se, st / n, sx / n, se / n))
        return out

    def pairs(t):
        cols = "objectId, coord_ra, coord_dec, subChunkId"
        sep = angsep_sql("o1.coord_ra", "o1.coord_dec", "o2.coord_ra", "o2.coord_dec")
        if "Neighbours" in t:  # chunk + its overlap, prepared per chunk with an index
            o2, on = t["Neighbours"], "o2.subChunkId = o1.subChunkId AND "
        elif "Overlap" in t:
            o2 = f"(SELECT {cols} FROM {t['Object']} UNION ALL SELECT {cols} FROM {t['Overlap']})"
            on = "o2.subChunkId = o1.subChunkId AND "
        else:
            o2, on = t["Object"], ""
        return (
            f"SELECT o1.objectId, o2.objectId, {sep} FROM {t['Object']} AS o1 JOIN {o2} AS o2 "
            f"ON {on}o2.coord_dec BETWEEN o1.coord_dec - {r_pair!r} AND o1.coord_dec + {r_pair!r} "
            f"WHERE o1.objectId <> o2.objectId AND {sep} < {r_pair!r}"
        )

    return [
        Query("row_counts", "rows per table", lambda t: f"SELECT 'Object', COUNT(*) FROM {t['Object']} UNION ALL SELECT 'Source', COUNT(*) FROM {t['Source']}", ("Object", "Source"), "sum", 1),
        Query("source_counts_per_band", "Source rows per band", lambda t: f"SELECT band, COUNT(*) FROM {t['Source']} GROUP BY band", ("Source",), "sum", 1),
        Query("object_detections_per_band", "Objects with S/N > 5 per band", detections, ("Object",), "sum", 1),
        Query(
            "cone_search",
            f"Objects within {p.cone_radius} deg of the cluster centre",
            lambda t: f"SELECT objectId, coord_ra, coord_dec FROM {t['Object']} WHERE {sep0} < {p.cone_radius!r}",
            ("Object",),
            region=(p.ra, p.dec, p.cone_radius),
        ),
        Query(
            "red_sequence_cut",
            f"r < {p.r_max}, {p.gr_min} < g-r < {p.gr_max}, unflagged",
            lambda t: (
                f"SELECT objectId, {mag_sql('r_psfFlux')}, {gr}, {mag_sql('i_psfFlux')} FROM {t['Object']} "
                f"WHERE r_psfFlux > {r_flux!r} AND g_psfFlux > 0 AND NOT r_psfFlux_flag AND NOT g_psfFlux_flag "
                f"AND {gr} BETWEEN {p.gr_min!r} AND {p.gr_max!r}"
            ),
            ("Object",),
        ),
        Query(
            "shear_profile",
            f"tangential/cross ellipticity in {p.shear_bins} radial bins of {p.shear_bin} deg",
            shear,
            ("Object",),
            "sum",
            1,
            region=(p.ra, p.dec, shear_r),
            post=shear_post,
        ),
        Query(
            "object_source_join",
            "per Object and band: number of Sources and flux range, within the cone",
            lambda t: (
                f"SELECT o.objectId, s.band, COUNT(*), MIN(s.base_PsfFlux_instFlux), MAX(s.base_PsfFlux_instFlux) "
                f"FROM {t['Object']} AS o JOIN {t['Source']} AS s ON s.objectId = o.objectId "
                f"WHERE {sep_o} < {p.cone_radius!r} GROUP BY o.objectId, s.band"
            ),
            ("Object", "Source"),
            region=(p.ra, p.dec, p.cone_radius),
        ),
        Query("near_neighbours", f"pairs closer than {p.pair_radius_arcsec} arcsec", pairs, ("Object", "Overlap")),
    ]


@dataclass
class QueryOutcome:
    name: str
    description: str
    sql_reference: str
    sql_chunk_example: str
    reference_rows: int
    chunked_rows: int
    chunks_queried: int
    seconds_reference: float
    seconds_chunked: float
    only_reference: list[list] = field(default_factory=list)
    only_chunked: list[list] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.only_reference and not self.only_chunked


@dataclass
class VerifyResult:
    reference_db: str
    chunked_db: str
    chunks: int
    outcomes: list[QueryOutcome]
    seconds: float
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(o.ok for o in self.outcomes)

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "reference_db": self.reference_db,
            "chunked_db": self.chunked_db,
            "chunks": self.chunks,
            "seconds": self.seconds,
            "problems": self.problems,
            "queries": [
                {
                    "name": o.name,
                    "ok": o.ok,
                    "description": o.description,
                    "reference_rows": o.reference_rows,
                    "chunked_rows": o.chunked_rows,
                    "chunks_queried": o.chunks_queried,
                    "seconds_reference": o.seconds_reference,
                    "seconds_chunked": o.seconds_chunked,
                    "sql_reference": o.sql_reference,
                    "sql_chunk_example": o.sql_chunk_example,
                    "only_reference": o.only_reference,
                    "only_chunked": o.only_chunked,
                }
                for o in self.outcomes
            ],
        }

    def report(self) -> str:
        verdict = "IDENTICAL" if self.ok else "DIFFERENT"
        lines = [
            f"{verdict}: {len(self.outcomes)} queries on `{self.reference_db}` vs {self.chunks} chunks of "
            f"`{self.chunked_db}` ({self.seconds:.2f} s)"
        ]
        lines += [f"  PROBLEM {p}" for p in self.problems]
        for o in self.outcomes:
            mark = "ok  " if o.ok else "DIFF"
            lines.append(
                f"  {mark} {o.name:28s} {o.reference_rows:7d} rows (ref) {o.chunked_rows:7d} rows "
                f"({o.chunks_queried} chunks)  {o.description}"
            )
            if not o.ok:
                lines.append(f"       SQL (reference): {o.sql_reference}")
                lines.append(f"       SQL (per chunk): {o.sql_chunk_example}")
                for r in o.only_reference[:10]:
                    lines.append(f"       only in reference: {r}")
                for r in o.only_chunked[:10]:
                    lines.append(f"       only in chunked:   {r}")
        return "\n".join(lines)


def _canon(v):
    if isinstance(v, bytes):
        return v.decode()
    return v


def _rows(cur, sql: str) -> list[tuple]:
    cur.execute(sql)
    return [tuple(_canon(v) for v in r) for r in cur.fetchall()]


def _merge(q: Query, parts: list[list[tuple]]) -> list[tuple]:
    rows = [r for part in parts for r in part]
    if q.merge == "union":
        return rows
    acc: dict[tuple, list] = {}
    with decimal.localcontext() as ctx:
        ctx.prec = 100
        for r in rows:
            k, vals = r[: q.keys], r[q.keys :]
            if k not in acc:
                acc[k] = [v if v is not None else 0 for v in vals]
            else:
                acc[k] = [a + (v if v is not None else 0) for a, v in zip(acc[k], vals, strict=True)]
    return [k + tuple(v) for k, v in acc.items()]


def _normalise_sums(q: Query, rows: list[tuple]) -> list[tuple]:
    if q.merge != "sum":
        return rows
    return [r[: q.keys] + tuple(v if v is not None else 0 for v in r[q.keys :]) for r in rows]


def chunks_in_db(cur, table: str) -> set[int]:
    cur.execute("SHOW TABLES")
    out = set()
    for (name,) in cur.fetchall():
        m = CHUNK_TABLE_RE.match(name)
        if m and m.group("table") == table and not m.group("ov"):
            out.add(int(m.group("chunk")))
    return out


def _region_chunks(chunker: Chunker, region: tuple[float, float, float]) -> set[int]:
    import lsst.sphgeom as sg

    ra, dec, radius = region
    circle = sg.Circle(sg.UnitVector3d(sg.LonLat.fromDegrees(ra, dec)), sg.Angle.fromDegrees(radius))
    sgc = sg.Chunker(chunker.num_stripes, chunker.num_sub_stripes)
    return {int(c) for c in sgc.getChunksIntersecting(circle)}


def run_suite(
    db: DbConfig,
    reference_db: str,
    chunked_db: str,
    params: SuiteParams | None = None,
    chunker: Chunker | None = None,
    only: list[str] | None = None,
    max_diff_rows: int = 50,
) -> VerifyResult:
    """Run every query both ways and compare; chunk pruning for region queries uses lsst.sphgeom."""
    params = params or SuiteParams()
    chunker = chunker or Chunker()
    if params.pair_radius_arcsec / 3600.0 >= chunker.overlap:
        raise PartitionConfigError(
            f"pair radius {params.pair_radius_arcsec} arcsec is not below the overlap "
            f"{chunker.overlap * 3600:.1f} arcsec: the chunked near-neighbour query would miss pairs"
        )
    suite = [q for q in build_suite(params) if not only or q.name in only]
    t0 = time.monotonic()
    obj, src = params.object_table, params.source_table
    ref_names = {"Object": ident(obj), "Source": ident(src)}
    outcomes: list[QueryOutcome] = []
    problems: list[str] = []
    conn_ref = db.connect(reference_db)
    conn_chk = db.connect(chunked_db)
    try:
        with conn_ref.cursor() as cref, conn_chk.cursor() as cchk:
            obj_chunks = chunks_in_db(cchk, obj)
            src_chunks = chunks_in_db(cchk, src)
            cchk.execute("SHOW TABLES")
            present = {r[0] for r in cchk.fetchall()}
            if not obj_chunks:
                problems.append(f"no {obj}_<chunk> tables in `{chunked_db}`")
            for orphan in sorted(src_chunks - obj_chunks):
                problems.append(f"{src}_{orphan} exists but {obj}_{orphan} does not")
            for q in suite:
                sql_ref = q.sql(ref_names)
                t1 = time.monotonic()
                ref = _normalise_sums(q, _rows(cref, sql_ref))
                t_ref = time.monotonic() - t1
                driver = src_chunks if q.tables == ("Source",) else obj_chunks
                chunks = sorted(driver)
                if q.region is not None:
                    chunks = sorted(set(chunks) & _region_chunks(chunker, q.region))
                parts = []
                example = ""
                t1 = time.monotonic()
                for c in chunks:
                    names = {"Object": ident(chunk_table_name(obj, c))}
                    if "Source" in q.tables:
                        if chunk_table_name(src, c) in present:
                            names["Source"] = ident(chunk_table_name(src, c))
                        elif q.name != "row_counts":
                            continue  # a join with no child rows in this chunk yields nothing
                    if "Overlap" in q.tables:
                        ov = chunk_table_name(obj, c, True)
                        if ov not in present:
                            problems.append(f"{ov} is missing in `{chunked_db}`")
                            continue
                        names["Overlap"] = ident(ov)
                        # Like a Qserv worker materialising sub-chunk tables: chunk + overlap rows,
                        # indexed by (subChunkId, Dec): the self-join stays within one sub-chunk.
                        prep = (
                            "CREATE TEMPORARY TABLE `nn_neighbours` (KEY (subChunkId, coord_dec)) ENGINE=MyISAM "
                            f"SELECT objectId, coord_ra, coord_dec, subChunkId FROM {names['Object']} "
                            f"UNION ALL SELECT objectId, coord_ra, coord_dec, subChunkId FROM {names['Overlap']}"
                        )
                        cchk.execute("DROP TEMPORARY TABLE IF EXISTS `nn_neighbours`")
                        cchk.execute(prep)
                        names["Neighbours"] = "`nn_neighbours`"
                        example = example or prep + "; "
                    if q.name == "row_counts" and "Source" not in names:
                        sql = f"SELECT 'Object', COUNT(*) FROM {names['Object']}"
                    else:
                        sql = q.sql(names)
                    if not example or example.endswith("; "):
                        example += sql
                    parts.append(_rows(cchk, sql))
                if q.name == "row_counts":
                    for c in sorted(src_chunks - obj_chunks):
                        parts.append(_rows(cchk, f"SELECT 'Source', COUNT(*) FROM {ident(chunk_table_name(src, c))}"))
                chk = _merge(q, parts)
                t_chk = time.monotonic() - t1
                if q.post:
                    ref, chk = q.post(ref), q.post(chk)
                cr, cc = Counter(ref), Counter(chk)
                only_ref = sorted((list(r) for r in (cr - cc).elements()), key=repr)[:max_diff_rows]
                only_chk = sorted((list(r) for r in (cc - cr).elements()), key=repr)[:max_diff_rows]
                outcomes.append(
                    QueryOutcome(
                        q.name, q.description, sql_ref, example, len(ref), len(chk), len(chunks), t_ref, t_chk,
                        [[_jsonable(v) for v in r] for r in only_ref],
                        [[_jsonable(v) for v in r] for r in only_chk],
                    )
                )
    finally:
        conn_ref.close()
        conn_chk.close()
    return VerifyResult(reference_db, chunked_db, len(obj_chunks), outcomes, time.monotonic() - t0, problems)


def _jsonable(v):
    if isinstance(v, decimal.Decimal):
        return str(v)
    return v

