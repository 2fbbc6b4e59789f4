"""``appliance qserv ...``: LSST catalogs to a partitioned, loaded and verified Qserv dataset."""

from __future__ import annotations

import argparse
import glob
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from appliance.exitcodes import Exit
from appliance.qserv.errors import CatalogError

FLOW = """\
Typical flow (each step's output is the next step's input):
  appliance qserv generate  --out field/                         # synthetic cluster field, afw FITS
  appliance qserv convert   --director Object=field/Object.fits \\
                            --child 'Source=field/Source_*.fits' --out conv/
  appliance qserv partition --converted conv/ --out parts/       # chunk_<id>.txt, _overlap.txt
  appliance qserv load      --converted conv/ --partitioned parts/ --socket /path/mysqld.sock
  appliance qserv verify    --database cluster --socket ...      # reference vs. chunked: identical?
  appliance qserv export    --database cluster --out cluster_field.fits --socket ...
  appliance qserv ingest    --url http://repl-ctl:25081 --converted conv/ --partitioned parts/ --dry-run
Database passwords come from $QSERV_MYSQL_PASSWORD, the Qserv ingest key from $QSERV_AUTH_KEY.
"""


@dataclass
class _Results:
    """Several results shown as one: ok when all are, JSON under ``key``, reports joined."""

    key: str
    parts: list

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.parts)

    def to_json(self) -> dict:
        return {"ok": self.ok, self.key: [p.to_json() for p in self.parts]}

    def report(self) -> str:
        return "\n".join(p.report() for p in self.parts)


def _json_errors(func):
    """With ``--json``, an error is also printed as JSON on stdout (the one stderr line and exit code stay)."""
    import functools

    @functools.wraps(func)
    def wrapper(args) -> int:
        from appliance.errors import ApplianceError

        try:
            return func(args)
        except ApplianceError as err:
            if getattr(args, "json", False):
                detail = err.to_json() if hasattr(err, "to_json") else {"message": str(err)}
                doc = {"ok": False, "error": {"type": type(err).__name__, "exit_code": int(err.exit_code), "text": str(err), **detail}}
                sys.stdout.write(_compact_json(doc) + "\n")
            raise

    return wrapper


def _compact_json(doc) -> str:
    """One line of JSON: ``json.dumps`` without indent runs the C encoder; with ``indent`` it is pure
    Python (1.0 vs 0.3 CPU-s for the 146k chunks of a whole-sky 340/3 summary). Pipe to ``jq`` to read.
    """
    return json.dumps(doc, separators=(",", ":"), default=str)


def _emit(args, result) -> int:
    if getattr(args, "json", False):
        sys.stdout.write(_compact_json(result.to_json()) + "\n")
    else:
        print(result.report())
    return 0 if result.ok else Exit.NOT_REPRODUCED  # a negative verdict (verify found differences)


def _db_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("MariaDB connection (password from $QSERV_MYSQL_PASSWORD)")
    g.add_argument("--host", default="127.0.0.1", help="server host (default 127.0.0.1)")
    g.add_argument("--port", type=int, default=3306, help="server port (default 3306)")
    g.add_argument("--socket", help="unix socket path; preferred over host/port when given")
    g.add_argument("--user", default="root", help="user name (default root)")


def _db(args):
    from appliance.qserv.load import DbConfig

    return DbConfig(host=args.host, port=args.port, user=args.user, unix_socket=args.socket)


def _chunker_options(p: argparse.ArgumentParser) -> None:
    from appliance.qserv.defaults import (
        DEFAULT_NUM_STRIPES,
        DEFAULT_NUM_SUB_STRIPES,
        DEFAULT_OVERLAP,
    )

    g = p.add_argument_group("partitioning (must match the Qserv database's parameters)")
    g.add_argument("--num-stripes", "--part.num-stripes", dest="num_stripes", type=int, default=DEFAULT_NUM_STRIPES, help=f"declination stripes (default {DEFAULT_NUM_STRIPES})")
    g.add_argument("--num-sub-stripes", "--part.num-sub-stripes", dest="num_sub_stripes", type=int, default=DEFAULT_NUM_SUB_STRIPES, help=f"sub-stripes per stripe (default {DEFAULT_NUM_SUB_STRIPES})")
    g.add_argument("--overlap", "--part.overlap", dest="overlap", type=float, default=DEFAULT_OVERLAP, help=f"overlap radius in deg (default {DEFAULT_OVERLAP} = 1 arcmin)")


def _expand(spec: str, flag: str) -> tuple[str, list[str]]:
    name, sep, pattern = spec.partition("=")
    if not sep or not name or not pattern:
        raise CatalogError(flag, f"expected TABLE=FILE_OR_GLOB, got '{spec}'")
    files = sorted(glob.glob(pattern)) or ([pattern] if Path(pattern).exists() else [])
    if not files:
        raise CatalogError(pattern, f"no files match for table {name}")
    return name, files


def cmd_generate(args) -> int:
    from appliance.qserv.generate import FieldSpec, write_field

    spec = FieldSpec(
        ra=args.ra, dec=args.dec, radius=args.radius, redshift=args.redshift, n_members=args.members,
        n_background=args.background, n_stars=args.stars, visits_per_band=args.visits, seed=args.seed,
    )
    truth = write_field(spec, args.out)

    class R:
        ok = True

        def to_json(self):
            return {"ok": True, **{k: v for k, v in truth.items() if k != "member_ids"}, "n_members": len(truth["member_ids"])}

        def report(self):
            return (
                f"wrote {truth['n_objects']} objects and {truth['n_sources']} sources "
                f"({len(truth['source_files'])} visits) around RA {spec.ra} Dec {spec.dec}, z={spec.redshift} to {args.out}"
            )

    return _emit(args, R())


def cmd_convert(args) -> int:
    from appliance.qserv.convert import TableInput, convert_tables, parse_mapping

    rename = dict(parse_mapping(args.rename))
    name, files = _expand(args.director, "--director")
    specs = [TableInput(name, files, args.format, rename, args.angle_unit)]
    for child in args.child or []:
        cname, cfiles = _expand(child, "--child")
        specs.append(TableInput(cname, cfiles, args.format, rename, args.angle_unit, director=name, director_key=args.child_key))
    res = convert_tables(args.database, specs, args.out, progress=not args.json)
    return _emit(args, res)


def _split_names(value: str | None, flag: str, count: int | None = None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if count is not None and len(names) != count:
        raise CatalogError(flag, f"expected {count} comma-separated column names, got '{value}'")
    return names


def _direct_table(args):
    """``--input`` route: the table as given (names, id and position columns untouched)."""
    from appliance.qserv.felis_schema import TableSchema
    from appliance.qserv.readers import FORMATS, InputSpec, format_of

    files: list[str] = []
    for pattern in args.input:
        found = sorted(glob.glob(pattern)) or ([pattern] if Path(pattern).exists() else [])
        if not found:
            raise CatalogError(pattern, "no input file matches")
        files += found
    fmt = args.format or format_of(files[0])
    if fmt not in FORMATS:
        raise CatalogError("--format", f"'{fmt}' is not one of {', '.join(FORMATS)}")
    fields = _split_names(args.fields, "--fields")
    delim = args.delimiter.encode().decode("unicode_escape") if args.delimiter else None
    spec = InputSpec(tuple(files), fmt, tuple(fields) if fields else None, delim)
    name = args.table or Path(files[0]).name.split(".")[0]
    if args.child_of:
        if not args.key:
            raise CatalogError("--key", "a child table (--child-of) needs --key: its column holding the director's id")
        table = TableSchema(name, [], args.key, director=args.child_of, director_key=args.key)
    else:
        pos = _split_names(args.pos, "--pos", 2)
        if not pos or not args.id:
            raise CatalogError("--pos/--id", "a director table needs --pos RA,DEC and --id ID (its columns, as named in the input)")
        table = TableSchema(name, [], args.id, ra=pos[0], dec=pos[1])
    return spec, table


def cmd_partition(args) -> int:
    from appliance.qserv.chunker import Chunker
    from appliance.qserv.partition import partition_table

    chunker = Chunker(args.num_stripes, args.num_sub_stripes, args.overlap)
    common = {"batch_rows": args.batch_rows, "force": args.force, "progress": not args.json, "workers": args.workers,
              "buffer_mb": args.buffer_mb}
    if args.input:
        if args.converted:
            raise CatalogError("--input", "give either --input (a table as it is) or --converted (convert's output), not both")
        spec, table = _direct_table(args)
        summaries = [partition_table(spec, table, args.out, chunker, **common)]
    else:
        from appliance.qserv.felis_schema import load_schema

        if not args.converted:
            raise CatalogError("--converted", "give --converted DIR (convert's output) or --input FILE with --pos and --id")
        conv = Path(args.converted)
        schema = load_schema(conv / "schema.yaml")
        ordered = [schema.director()] + [t for t in schema.tables if not t.is_director]
        summaries = [partition_table(conv / f"{t.name}.parquet", t, args.out, chunker, **common) for t in ordered]
    return _emit(args, _Results("tables", summaries))


def cmd_load(args) -> int:
    from appliance.qserv.felis_schema import load_schema
    from appliance.qserv.load import load_chunked, load_reference

    schema = load_schema(Path(args.converted) / "schema.yaml")
    db = _db(args)
    results = []
    if not args.chunked_only:
        results.append(load_reference(db, schema, args.converted, args.database, progress=not args.json))
    if not args.reference_only:
        if not args.partitioned:
            raise CatalogError("--partitioned", "needed for the chunked load (or use --reference-only)")
        chunked = f"{args.database}_chunks" if args.database else None
        results.append(load_chunked(db, schema, args.partitioned, chunked, progress=not args.json))

    return _emit(args, _Results("loads", results))


def _suite_params(args):
    from appliance.qserv.verify import SuiteParams

    return SuiteParams(ra=args.ra, dec=args.dec, cone_radius=args.cone_radius, pair_radius_arcsec=args.pair_radius)


def cmd_verify(args) -> int:
    from appliance.qserv.chunker import Chunker
    from appliance.qserv.verify import run_suite

    res = run_suite(
        _db(args), args.database, args.chunked_database or f"{args.database}_chunks", _suite_params(args),
        Chunker(args.num_stripes, args.num_sub_stripes, args.overlap), only=args.query,
    )
    return _emit(args, res)


def cmd_export(args) -> int:
    from appliance.qserv.export import cluster_field_sql, export_query
    from appliance.qserv.felis_schema import load_schema

    schema = load_schema(args.schema) if args.schema else None
    sql = args.sql or cluster_field_sql("Object", args.ra, args.dec, args.radius)
    meta = {"CLRA": args.ra, "CLDEC": args.dec, "RADIUS": args.radius} if not args.sql else {}
    return _emit(args, export_query(_db(args), args.database, sql, args.out, schema, meta))


def cmd_ingest(args) -> int:
    from appliance.qserv.felis_schema import load_schema
    from appliance.qserv.ingest import IngestClient, build_plan, run_ingest

    schema = load_schema(Path(args.converted) / "schema.yaml")
    plan = build_plan(schema, args.partitioned, args.database)
    if args.dry_run:
        return _emit(args, plan)
    client = IngestClient(args.url, version=args.api_version)
    out = run_ingest(client, plan, publish=not args.no_publish, progress=not args.json)

    class R:
        ok = True

        def to_json(self):
            return out

        def report(self):
            return f"ingested {out['files']} files in {out['chunks']} chunks, transaction {out['transaction_id']}"

    return _emit(args, R())


def register(subparsers) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    q = subparsers.add_parser(
        "qserv",
        help="LSST catalogs -> Qserv: convert, partition, load, verify, export, ingest",
        description="From LSST stack catalogs (afw FITS) to Qserv: Felis schema, Qserv's own chunking, "
        "MariaDB reference and per-chunk tables, and a query suite that must give identical results.\n\n" + FLOW,
        formatter_class=fmt,
    )
    sub = q.add_subparsers(dest="qserv_command", metavar="STEP")
    sub.required = True

    p = sub.add_parser("generate", help="write a synthetic galaxy-cluster field (afw FITS: Object + Source per visit)",
                       description="Synthetic galaxy cluster at a known centre and redshift: red-sequence members, sheared "
                       "background galaxies, stars, blends; ugriz PSF fluxes with errors (some NaN, flagged), shapes; "
                       "an Object table and one Source table per visit, in the afw FITS layout. Also truth.json.", formatter_class=fmt)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--ra", type=float, default=0.25, help="cluster centre RA deg (default 0.25: the field crosses RA 0)")
    p.add_argument("--dec", type=float, default=-30.0, help="cluster centre Dec deg")
    p.add_argument("--radius", type=float, default=0.4, help="field radius deg")
    p.add_argument("--redshift", type=float, default=0.3)
    p.add_argument("--members", type=int, default=400, help="cluster members")
    p.add_argument("--background", type=int, default=6000, help="background (lensed) galaxies")
    p.add_argument("--stars", type=int, default=300)
    p.add_argument("--visits", type=int, default=2, help="visits per band (Source tables)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", action="store_true", help="machine-readable result")
    p.set_defaults(func=_json_errors(cmd_generate))

    p = sub.add_parser("convert", help="afw FITS / Parquet / FITS tables -> Parquet + Felis schema.yaml",
                       description="Angles to degrees (RA in [0,360)), flags bits to named BOOLEAN columns, NaN/inf to NULL "
                       "(counted), id -> <table>Id, strings to fixed CHAR. Writes <Table>.parquet and a Felis schema "
                       "validated by lsst-felis (director = table without foreign key; RA/Dec by UCD).\n\n"
                       "Example: convert --director Object=field/Object.fits --child 'Source=field/Source_*.fits' --out conv/",
                       formatter_class=fmt)
    p.add_argument("--director", required=True, metavar="TABLE=GLOB", help="the director table and its files")
    p.add_argument("--child", action="append", metavar="TABLE=GLOB", help="a child table placed by its director key (repeatable)")
    p.add_argument("--child-key", default="objectId", help="child column referencing the director's id (default objectId)")
    p.add_argument("--format", choices=["afw", "parquet", "fits"], default="afw", help="input format (default afw)")
    p.add_argument("--rename", action="append", metavar="OLD=NEW", help="column mapping for non-afw inputs, e.g. RA=coord_ra DEC=coord_dec id=objectId")
    p.add_argument("--angle-unit", choices=["deg", "rad"], help="unit of coord_ra/coord_dec in non-afw inputs")
    p.add_argument("--database", default="cluster", help="catalog (database) name for the schema (default cluster)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_json_errors(cmd_convert))

    p = sub.add_parser("partition", help="Qserv chunking: chunk_<id>.txt and chunk_<id>_overlap.txt per table",
                       description="Assigns every row the chunkId/subChunkId Qserv's sph-partition would and writes the "
                       "director's rows plus overlap rows, and the children's rows (in their director's chunk), as CSV "
                       "with chunkId,subChunkId appended. Two ways in:\n"
                       "  --converted DIR   convert's output (schema.yaml + Parquet), all tables\n"
                       "  --input FILE      one table as it is: CSV/TSV (rows kept byte for byte), Parquet or FITS,\n"
                       "                    columns named as in the file (like sph-partition's --part.pos, --in.csv.field)\n\n"
                       "Examples:\n"
                       "  partition --input obj.csv --pos ra,dec --id id --out parts/             # parts/obj/\n"
                       "  partition --input 'o_*.tsv' --fields id,ra,dec,mag --pos ra,dec --id id --table Object --out parts/\n"
                       "  partition --input src.parquet --child-of Object --key objectId --out parts/\n"
                       "  partition --converted conv/ --out parts/ --workers 2\n\n"
                       "Streaming: memory is one batch, flat in the number of rows. partition.json per table lists "
                       "rows per chunk, empty chunks and overlap rows.", formatter_class=fmt)
    p.add_argument("--converted", help="directory written by 'convert'")
    p.add_argument("--input", action="append", metavar="FILE_OR_GLOB", help="a table as it is (repeatable; alias --in.path)")
    p.add_argument("--in.path", dest="input", action="append", help=argparse.SUPPRESS)
    p.add_argument("--table", help="table name for --input (default: the file name without extension); the output directory")
    p.add_argument("--format", choices=["csv", "tsv", "parquet", "fits"], help="input format (default: from the file name)")
    p.add_argument("--pos", "--part.pos", dest="pos", metavar="RA,DEC", help="position columns in deg (director tables)")
    p.add_argument("--id", "--part.id", dest="id", metavar="COL", help="the director's unique id column (its index places children)")
    p.add_argument("--fields", "--in.csv.field", dest="fields", metavar="A,B,...", help="CSV/TSV column names when the file has no header line")
    p.add_argument("--delimiter", "--in.csv.delimiter", dest="delimiter", help="CSV field separator (default ',' for csv, tab for tsv)")
    p.add_argument("--child-of", metavar="TABLE", help="partition a child table by its director TABLE's index (in --out)")
    p.add_argument("--key", metavar="COL", help="child column holding the director's id (with --child-of)")
    p.add_argument("--out", "--out.dir", dest="out", required=True, help="output directory (one subdirectory per table)")
    _chunker_options(p)
    p.add_argument("--workers", "--mr.num-workers", dest="workers", type=int, default=1, help="processes (default 1); input split by row groups / byte ranges")
    p.add_argument("--buffer-mb", type=float, default=48.0, metavar="MB",
                   help="pass 2's buffer budget in MB (default 48, 0.0625-16384): peak memory is flat in the rows; "
                        "a smaller budget flushes chunk files more often, with the same bytes")
    p.add_argument("--batch-rows", type=int, default=131_072, help="rows per batch (Parquet/FITS; CSV is read in 8 MB blocks): bounds memory (default 131072)")
    p.add_argument("--force", action="store_true", help="replace an existing partitioning")
    p.add_argument("--json", action="store_true", help="machine-readable result; errors as JSON too")
    p.set_defaults(func=_json_errors(cmd_partition))

    p = sub.add_parser("load", help="load the MariaDB reference tables and the per-chunk worker tables",
                       description="Reference: database <db> with all rows (LOAD DATA LOCAL INFILE). Chunked: database "
                       "<db>_chunks with <Table>_<chunk> and <Director>FullOverlap_<chunk>, as a Qserv worker holds them. "
                       "Both databases are dropped and recreated. Any MariaDB warning fails the load.", formatter_class=fmt)
    p.add_argument("--converted", required=True, help="directory written by 'convert'")
    p.add_argument("--partitioned", help="directory written by 'partition'")
    p.add_argument("--database", help="reference database name (default: the schema's name)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--reference-only", action="store_true")
    g.add_argument("--chunked-only", action="store_true")
    _db_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_json_errors(cmd_load))

    def suite_options(pp):
        pp.add_argument("--ra", type=float, default=0.25, help="cluster centre RA deg")
        pp.add_argument("--dec", type=float, default=-30.0, help="cluster centre Dec deg")

    p = sub.add_parser("verify", help="run the query suite on reference and chunked tables; identical results required",
                       description="Queries: row counts, Source counts per band, detections per band, cone search, red-sequence "
                       "colour/magnitude cut, tangential-shear profile (exact DECIMAL sums), Object-Source join, "
                       "near-neighbour pairs (needs the overlap tables). Exit 0 when identical, 1 with the differing rows.",
                       formatter_class=fmt)
    p.add_argument("--database", default="cluster", help="reference database (default cluster)")
    p.add_argument("--chunked-database", help="default <database>_chunks")
    suite_options(p)
    p.add_argument("--cone-radius", type=float, default=0.1, help="cone radius deg (default 0.1)")
    p.add_argument("--pair-radius", type=float, default=3.0, help="near-neighbour radius arcsec (default 3, must be < overlap)")
    p.add_argument("--query", action="append", help="run only this query (repeatable)")
    _chunker_options(p)
    _db_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_json_errors(cmd_verify))

    p = sub.add_parser("export", help="write a query result as a FITS table (input for offline recipes)",
                       description="Recipes run without network; this is how catalog data reaches them. Default query: the "
                       "cluster field (ids, positions, ugriz fluxes, shapes, flags) within --radius of the centre.",
                       formatter_class=fmt)
    p.add_argument("--database", default="cluster")
    p.add_argument("--out", required=True, help="FITS file to write")
    suite_options(p)
    p.add_argument("--radius", type=float, default=0.3, help="field radius deg (default 0.3)")
    p.add_argument("--sql", help="a custom single SELECT instead of the cluster-field query")
    p.add_argument("--schema", help="Felis schema.yaml: column units for the FITS header")
    _db_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_json_errors(cmd_export))

    p = sub.add_parser("ingest", help="push a partitioned catalog to a real Qserv via its ingest REST API",
                       description="Register database and tables, start a transaction, allocate chunks, upload every chunk file "
                       "to its worker (HTTP /ingest/csv), commit, publish. Never run against a real Qserv from this "
                       "project's tests (there is none here): use --dry-run to see the plan.", formatter_class=fmt)
    p.add_argument("--url", default="http://127.0.0.1:25081", help="Replication Controller base URL")
    p.add_argument("--converted", required=True)
    p.add_argument("--partitioned", required=True)
    p.add_argument("--database", help="Qserv database name (default: the schema's name)")
    p.add_argument("--api-version", type=int, help="ingest API version to send (omitted when not given)")
    p.add_argument("--no-publish", action="store_true", help="commit but do not publish")
    p.add_argument("--dry-run", action="store_true", help="print the requests that would be made")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_json_errors(cmd_ingest))
