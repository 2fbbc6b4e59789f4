"""The ``image`` stage for one observation: detect, cross-match with the known list, write catalogs.

Inputs come from the observation's ``products`` XML (beam, corrected, uncorrected, possibly
rebuilt). Catalogs (all detectors in one table, column ``detector``) are written as FITS and
VOTable under ``<work>/image/<item>/``. With a truth file the detections are matched to the injected
sources within one synthesized-beam FWHM (astropy ``SkyCoord.match_to_catalog_sky``), and every
injected source inside the beam cutoff is recorded as matched or missed, per detector, so
completeness and flux recovery can be summed over any selection of observations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from appliance.pipeline.detect import DETECTORS, Detection, detect, noise_rms
from appliance.pipeline.errors import PipelineError
from appliance.pipeline.fitsimage import read_image
from appliance.pipeline.products import ObsProducts


def _path(root: Path, work: Path, obs: ObsProducts, ptype: str) -> Path:
    f = next((f for f in obs.files if f.type == ptype), None)
    if f is None:
        raise PipelineError(obs.folder, f"no {ptype} product (run `products` first)")
    return (Path(work) if f.origin == "rebuilt" else Path(root) / obs.folder) / f.name


def crossmatch(dets: list[Detection], truth: list[dict], radius_deg: float) -> list[dict]:
    """One row per injected source and detector: matched?, measured flux."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    rows = []
    if not truth:
        return rows
    tc = SkyCoord([t["ra"] for t in truth] * u.deg, [t["dec"] for t in truth] * u.deg)
    for name in sorted({d.detector for d in dets} | set()):
        mine = [d for d in dets if d.detector == name]
        best: dict[int, Detection] = {}
        if mine:
            dc = SkyCoord([d.ra for d in mine] * u.deg, [d.dec for d in mine] * u.deg)
            idx, sep, _ = dc.match_to_catalog_sky(tc)
            for d, i, s in zip(mine, idx, sep.deg, strict=True):
                if s <= radius_deg and (int(i) not in best or d.flux > best[int(i)].flux):
                    best[int(i)] = d
        for i, t in enumerate(truth):
            d = best.get(i)
            rows.append({"detector": name, "kind": t["kind"], "true_flux": t["flux"], "snr": t.get("snr"),
                         "matched": d is not None, "flux": None if d is None else d.flux})
    return rows


def write_catalogs(dets: list[Detection], out: Path) -> tuple[Path, Path]:
    from astropy.table import Table

    from appliance.fsutil import atomic_open

    t = Table(rows=[(d.detector, d.ra, d.dec, d.x, d.y, d.flux, d.flux_err) for d in dets],
              names=("detector", "ra", "dec", "x", "y", "flux", "flux_err"),
              dtype=("U10", "f8", "f8", "f8", "f8", "f8", "f8"))
    for c, unit in (("ra", "deg"), ("dec", "deg"), ("x", "pix"), ("y", "pix"), ("flux", "Jy"), ("flux_err", "Jy")):
        t[c].unit = unit
    out.mkdir(parents=True, exist_ok=True)
    fits_path, vot_path = out / "catalog.fits", out / "catalog.vot"
    with atomic_open(fits_path, "wb") as f:
        t.write(f, format="fits")
    with atomic_open(vot_path, "wb") as f:
        t.write(f, format="votable")
    return fits_path, vot_path


@dataclass
class ImageResult:
    detections: list[Detection]
    matches: list[dict] = field(default_factory=list)
    catalogs: tuple[str, str] = ("", "")


def image_observation(root: Path, work: Path, obs: ObsProducts, out: Path,
                      detectors: tuple[str, ...] = DETECTORS, truth: dict | None = None) -> ImageResult:
    unc = read_image(_path(root, work, obs, "uncorrected"))
    cor = read_image(_path(root, work, obs, "corrected"))
    pb = read_image(_path(root, work, obs, "primaryBeam")).data
    if not (unc.data.shape == cor.data.shape == pb.shape):
        raise PipelineError(obs.folder, "beam, corrected and uncorrected images differ in shape")
    dets = detect(unc, cor, pb, detectors)
    fits_path, vot_path = write_catalogs(dets, out)
    res = ImageResult(dets, catalogs=(str(fits_path), str(vot_path)))
    if truth is not None:
        beam = unc.beam_pix()
        cdelt = abs(float(unc.header["CDELT2"]))
        radius = (beam[0] if beam else 3.0) * cdelt
        rms = noise_rms(unc.data)
        inside = []
        for s in truth["sources"]:
            x, y = unc.wcs.world_to_pixel_values(s["ra"], s["dec"])
            ix, iy = int(round(float(x))), int(round(float(y)))
            if 0 <= iy < pb.shape[0] and 0 <= ix < pb.shape[1] and np.isfinite(pb[iy, ix]):
                inside.append({**s, "snr": s["flux"] * float(pb[iy, ix]) / rms})  # S/N in the detection image
        res.matches = crossmatch(dets, inside, radius)
        for name in detectors:  # a detector that found nothing still missed every source
            if not any(m["detector"] == name for m in res.matches):
                res.matches += [{"detector": name, "kind": s["kind"], "true_flux": s["flux"], "snr": s["snr"],
                                 "matched": False, "flux": None} for s in inside]
    return res


@dataclass
class Quality:
    """Completeness and flux recovery per detector, over many observations."""

    rows: list[dict]

    @property
    def ok(self) -> bool:
        return True

    def per_detector(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for name in sorted({r["detector"] for r in self.rows}):
            mine = [r for r in self.rows if r["detector"] == name]
            pts = [r for r in mine if r["kind"] == "point"]
            bins = {}
            for lo, hi in ((0, 5), (5, 10), (10, 20), (20, 1e9)):
                b = [r for r in pts if lo <= (r["snr"] or 0) < hi]
                bins[f"snr {lo}-{hi if hi < 1e9 else 'inf'}"] = (round(sum(r["matched"] for r in b) / len(b), 3)
                                                                 if b else None)
            bright = [r for r in pts if (r["snr"] or 0) >= 10]
            ratio = [r["flux"] / r["true_flux"] for r in pts if r["matched"] and r["flux"] is not None]
            out[name] = {
                "sources": len(mine), "point_sources": len(pts),
                "completeness_snr_ge_10": round(sum(r["matched"] for r in bright) / len(bright), 3) if bright else None,
                "completeness_by_snr": bins,
                "flux_ratio_median": round(float(np.median(ratio)), 3) if ratio else None,
                "flux_ratio_p16_p84": [round(float(v), 3) for v in np.percentile(ratio, [16, 84])] if ratio else None,
            }
        return out

    def to_json(self) -> dict:
        return {"ok": True, "detectors": self.per_detector()}

    def report(self) -> str:
        lines = ["detector     completeness(S/N>=10)  by S/N 0-5 / 5-10 / 10-20 / >20     flux ratio median [p16,p84]"]
        for name, q in self.per_detector().items():
            b = " / ".join("-" if v is None else f"{v:.2f}" for v in q["completeness_by_snr"].values())
            lines.append(f"{name:<12} {q['completeness_snr_ge_10']!s:<22} {b:<34} "
                         f"{q['flux_ratio_median']} {q['flux_ratio_p16_p84']}")
        return "\n".join(lines)
