"""The ``products`` stage: one observation folder -> product types, a rebuilt image, XML metadata.

Rules, in order (each decision is data in ``ObsProducts``, with the reason when it is a flag):

1. Calibrator products are discarded by name (``classify.is_calibrator``).
2. Every other FITS file is read; a corrupt file or one without a celestial WCS flags the folder.
3. Primary beams are found by the FFT concentration test (``classify.is_beam``).
4. One beam and one image: the image is taken as corrected and the uncorrected image is rebuilt
   as corrected x beam (written to the work area, ``origin="rebuilt"``).
5. One beam and two images: the beam decides which is which (``classify.which_uncorrected``).
6. Anything else (no beam, two beams, three images, an empty folder) is flagged with the reason.

The XML document follows ``products.xsd`` (shipped beside this module) and is validated against it
before it is written; a document that fails is an error naming the file, never a silent write.
"""

from __future__ import annotations

import os
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from appliance.fsutil import atomic_write_bytes
from appliance.pipeline import classify
from appliance.pipeline.errors import BadInput
from appliance.pipeline.fitsimage import Image, is_fits, read_image, write_image
from appliance.pipeline.runner import item_id

NS = "urn:appliance:pipeline:products:1"
XSD = Path(__file__).with_name("products.xsd")
GENERATOR = "appliance pipeline products 1"


@dataclass
class FileProduct:
    name: str
    type: str  # primaryBeam | corrected | uncorrected | calibrator | unknown
    origin: str = "archive"
    concentration: float | None = None
    size: int | None = None


@dataclass
class ObsProducts:
    id: str
    folder: str
    status: str = "done"  # done | flagged
    reasons: list[str] = field(default_factory=list)
    files: list[FileProduct] = field(default_factory=list)
    meta: dict[str, object] = field(default_factory=dict)

    def path_of(self, ptype: str) -> str | None:
        return next((f.name for f in self.files if f.type == ptype), None)

    def flag(self, reason: str) -> None:
        self.status = "flagged"
        self.reasons.append(reason)

    def to_json(self) -> dict:
        return {"id": self.id, "folder": self.folder, "status": self.status, "reasons": self.reasons,
                "files": [f.__dict__ for f in self.files], "meta": self.meta}


def _meta(images: list[Image]) -> dict[str, object]:
    """Observation metadata from whichever header has it (headers are incomplete at random)."""
    keys = {"project": ("PROJECT",), "obsId": ("OBS_ID", "OBSID"), "target": ("OBJECT",),
            "dateObs": ("DATE-OBS",)}
    out: dict[str, object] = {}
    for name, ks in keys.items():
        for im in images:
            v = next((im.header.get(k) for k in ks if im.header.get(k) not in (None, "")), None)
            if v is not None:
                out[name] = str(v)
                break
    for im in images:
        radec = im.centre_radec()
        if radec is not None:
            out["ra"], out["dec"] = radec
            break
    return out


def classify_folder(root: Path, folder: str, work: Path) -> ObsProducts:
    """Decide the product types of one observation folder; rebuild the uncorrected image if needed.

    Never raises for bad input: a bad file flags the observation with the file and the reason.
    """
    obs = ObsProducts(item_id(folder), folder)
    d = Path(root) / folder
    names = sorted(p.name for p in d.iterdir() if p.is_file() and is_fits(p.name)) if d.is_dir() else []
    if not names:
        obs.flag(f"{folder}: empty product folder (no FITS files)")
        return obs
    images: list[tuple[FileProduct, Image]] = []
    beams: list[tuple[FileProduct, Image]] = []
    for name in names:
        size = (d / name).stat().st_size
        if classify.is_calibrator(name):
            obs.files.append(FileProduct(name, "calibrator", size=size))
            continue
        fp = FileProduct(name, "unknown", size=size)
        obs.files.append(fp)
        try:
            im = read_image(d / name)
        except BadInput as e:
            obs.flag(f"{name}: {e.detail}")
            continue
        beam, fp.concentration = classify.is_beam(im.data)
        (beams if beam else images).append((fp, im))
    obs.meta = _meta([im for _, im in beams + images])
    if obs.status == "flagged":
        return obs
    if len(beams) != 1:
        obs.flag(f"{len(beams)} primary-beam candidates (FFT concentration >= {classify.BEAM_THRESHOLD}), need 1")
        return obs
    (bfp, beam) = beams[0]
    bfp.type = "primaryBeam"
    if len(images) == 1:
        fp, im = images[0]
        if im.data.shape != beam.data.shape:
            obs.flag(f"{fp.name}: shape {im.data.shape} differs from the beam's {beam.data.shape}")
            return obs
        fp.type = "corrected"
        rebuilt = Path(work) / "rebuilt" / obs.id / "uncorrected.fits"
        write_image(rebuilt, im.data * beam.data, im.header)
        obs.files.append(FileProduct(str(rebuilt.relative_to(work)), "uncorrected", "rebuilt",
                                     size=rebuilt.stat().st_size))
    elif len(images) == 2:
        (fa, a), (fb, b) = images
        which = classify.which_uncorrected(a.data, b.data, beam.data)
        if which.uncorrected is None:
            obs.flag(which.reason)
            return obs
        unc, cor = (fa, fb) if which.uncorrected == 0 else (fb, fa)
        unc.type, cor.type = "uncorrected", "corrected"
    else:
        obs.flag(f"{len(images)} images besides the beam, need 1 or 2")
    return obs


# -- XML ------------------------------------------------------------------------------------------

def _el(parent: ET.Element, tag: str, text: object | None = None, **attrs: object) -> ET.Element:
    e = ET.SubElement(parent, f"{{{NS}}}{tag}", {k: str(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        e.text = str(text)
    return e


def to_xml(observations: list[ObsProducts], root: str) -> bytes:
    ET.register_namespace("", NS)
    top = ET.Element(f"{{{NS}}}products", {"root": root, "generator": GENERATOR})
    for o in observations:
        e = _el(top, "observation", id=o.id, folder=o.folder, status=o.status)
        for k in ("project", "obsId", "target", "dateObs", "ra", "dec"):
            if k in o.meta:
                _el(e, k, o.meta[k])
        for r in o.reasons:
            _el(e, "reason", r)
        for f in o.files:
            conc = None if f.concentration is None else f"{f.concentration:.6f}"
            _el(e, "file", name=f.name, type=f.type, origin=f.origin, concentration=conc, size=f.size)
    ET.indent(top)
    return ET.tostring(top, encoding="utf-8", xml_declaration=True)


@lru_cache(maxsize=1)
def _schema():  # type: ignore[no-untyped-def]
    """products.xsd compiled by libxml2 (lxml): validating one item's XML costs about 30 us, where
    xmlschema (pure Python, still what the tests validate with, as an independent reader) cost
    2.4 ms, a third of the stage's CPU per observation."""
    from lxml import etree

    return etree.XMLSchema(etree.parse(str(XSD), _parser()))


@lru_cache(maxsize=1)
def _parser():  # type: ignore[no-untyped-def]
    from lxml import etree

    # no entities, no DTD loading, no network: a products document is plain elements and attributes
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


_SCHEMA_LOCK = threading.Lock()  # an lxml schema's error log is per object: one validation at a time


def _new_schema_lock() -> None:
    # a worker forked while another thread validated (the web server's request threads read
    # products documents while a run from the page forks its workers) inherits the lock held, with
    # no thread to release it: the child starts with its own
    global _SCHEMA_LOCK
    _SCHEMA_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_schema_lock)


def warm() -> None:
    """Import what classifying a folder needs and build the schema, once, in this process: worker
    processes forked after this start with them (otherwise each spends about 1.5 s of CPU on them,
    as much as classifying 100 observations)."""
    import astropy.io.fits  # noqa: F401
    import astropy.wcs  # noqa: F401

    _schema()


def _read(path_or_bytes: Path | bytes, where: object) -> bytes:
    if isinstance(path_or_bytes, bytes):
        return path_or_bytes
    try:
        return Path(path_or_bytes).read_bytes()
    except OSError as e:
        raise BadInput(where, f"does not follow products.xsd: {e}") from e


def _check(doc: bytes, where: object) -> None:
    from lxml import etree

    try:
        tree = etree.fromstring(doc, _parser())
    except etree.XMLSyntaxError as e:
        raise BadInput(where, f"does not follow products.xsd: {str(e).splitlines()[0]}") from e
    schema = _schema()
    with _SCHEMA_LOCK:
        if schema.validate(tree):
            return
        err = schema.error_log[0]
    raise BadInput(where, f"does not follow products.xsd: line {err.line}: {err.message}")


def _parse(doc: bytes, where: object) -> ET.Element:
    try:
        return ET.fromstring(doc)
    except ET.ParseError as e:
        raise BadInput(where, f"does not follow products.xsd: {str(e).splitlines()[0]}") from e


def validate(path_or_bytes: Path | bytes, where: str | None = None) -> None:
    """Raise ``BadInput`` naming the document if it does not follow ``products.xsd``."""
    where = where or path_or_bytes
    _check(_read(path_or_bytes, where), where)


def write_xml(path: Path, observations: list[ObsProducts], root: str) -> None:
    doc = to_xml(observations, root)
    validate(doc, str(path))
    atomic_write_bytes(path, doc)


def read_xml(path: Path, check: bool = True) -> list[ObsProducts]:
    """Observations back from a products document (validated first unless ``check`` is false: a
    document this process has just validated and written)."""
    doc = _read(Path(path), Path(path))
    if check:
        _check(doc, Path(path))
    top = _parse(doc, Path(path))
    out = []
    for e in top.findall(f"{{{NS}}}observation"):
        o = ObsProducts(e.get("id", ""), e.get("folder", ""), e.get("status", "done"))
        for k in ("project", "obsId", "target", "dateObs", "ra", "dec"):
            c = e.find(f"{{{NS}}}{k}")
            if c is not None and c.text is not None:
                o.meta[k] = float(c.text) if k in ("ra", "dec") else c.text
        o.reasons = [r.text or "" for r in e.findall(f"{{{NS}}}reason")]
        for f in e.findall(f"{{{NS}}}file"):
            conc, size = f.get("concentration"), f.get("size")
            o.files.append(FileProduct(f.get("name", ""), f.get("type", "unknown"), f.get("origin", "archive"),
                                       float(conc) if conc else None, int(size) if size else None))
        out.append(o)
    return out


# -- scoring against the generator's truth ---------------------------------------------------------

TRUTH_TYPE = {"pb": "primaryBeam", "corrected": "corrected", "uncorrected": "uncorrected",
              "calibrator": "calibrator"}


@dataclass
class Confusion:
    """Classifier confusion table (truth row x decided column) over archive files."""

    table: dict[str, dict[str, int]]
    flag_expected: int
    flag_wrong: int  # observations flagged that should be done, or done that should be flagged

    @property
    def errors(self) -> int:
        return sum(n for t, row in self.table.items() for d, n in row.items() if t != d) + self.flag_wrong

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def to_json(self) -> dict:
        return {"ok": self.ok, "errors": self.errors, "table": self.table,
                "flag_expected": self.flag_expected, "flag_wrong": self.flag_wrong}

    def report(self) -> str:
        cols = ["primaryBeam", "corrected", "uncorrected", "calibrator", "unknown"]
        lines = ["truth \\ decided " + "".join(f"{c:>13}" for c in cols)]
        for t in cols[:-1]:
            row = self.table.get(t, {})
            lines.append(f"{t:<16}" + "".join(f"{row.get(c, 0):>13}" for c in cols))
        lines.append(f"observations expected flagged: {self.flag_expected}; wrong done/flagged verdicts: "
                     f"{self.flag_wrong}; errors: {self.errors}")
        return "\n".join(lines)


def confusion(observations: list[ObsProducts], truth: dict[str, dict]) -> Confusion:
    table: dict[str, dict[str, int]] = {}
    expected = wrong = 0
    for o in observations:
        t = truth.get(o.folder)
        if t is None:
            continue
        expected += t["expect"] == "flagged"
        wrong += (o.status == "flagged") != (t["expect"] == "flagged")
        decided = {f.name: f.type for f in o.files if f.origin == "archive"}
        for name, kind in t["files"].items():
            tt = TRUTH_TYPE[kind]
            if t["expect"] == "flagged" and tt != "calibrator":
                continue  # undecidable by construction: the verdict is scored, not the file types
            row = table.setdefault(tt, {})
            d = decided.get(name, "unknown")
            row[d] = row.get(d, 0) + 1
    return Confusion(table, expected, wrong)
