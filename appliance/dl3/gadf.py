"""Write a GADF DL3 directory atomically, and check that one conforms.

``convert`` is the imperative shell around ``irf.compute`` and ``events``: read, select, compute,
write everything into ``.<name>.tmp-*`` beside the target, then one ``rename``. A failure at any
step removes the temporary directory, so no partial product ever carries the final name.
"""

from __future__ import annotations

import gzip
import io as _bytesio
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable
from pyirf.io.gadf import (
    create_aeff2d_hdu,
    create_background_2d_hdu,
    create_energy_dispersion_hdu,
    create_psf_table_hdu,
    create_rad_max_hdu,
)

from appliance.dl3 import events, io, irf
from appliance.dl3.errors import DL3InputError
from appliance.fsutil import fsync_dir

HDU_NAMES = {"aeff": "EFFECTIVE AREA", "edisp": "ENERGY DISPERSION", "psf": "PSF", "bkg": "BACKGROUND",
             "rad_max": "RAD_MAX"}


@dataclass(frozen=True)
class ConvertOptions:
    events: tuple[Path, ...]
    mc: Path
    out: Path
    point_like: bool = True
    background_mc: Path | None = None
    cuts: irf.Cuts = field(default_factory=irf.Cuts)
    binning: irf.Binning = field(default_factory=irf.Binning)
    force: bool = False
    background: str = "2d"  # BKG_2D or BKG_3D from --background-mc (irf.BACKGROUND_KINDS)


@dataclass
class ConvertResult:
    out: Path
    point_like: bool
    observations: list[dict]
    irf_hdus: list[str]
    n_mc_selected: int
    cuts: dict = field(default_factory=dict)  # the selection applied: EVTSEL and, if energy-dependent, per bin

    ok = True

    def to_json(self) -> dict:
        return {"ok": True, "out": str(self.out), "point_like": self.point_like, "observations": self.observations,
                "irf_hdus": self.irf_hdus, "n_mc_selected": self.n_mc_selected, "cuts": self.cuts}

    def report(self) -> str:
        n = sum(o["n_events"] for o in self.observations)
        kind = "point-like" if self.point_like else "full-enclosure"
        return (f"{self.out}: {len(self.observations)} observations, {n} events after cuts, {kind} IRFs "
                f"({', '.join(self.irf_hdus)}) from {self.n_mc_selected} selected MC gammas")


def read_inputs(opts: ConvertOptions) -> tuple[list[tuple[Path, io.Columns, io.Columns, io.Columns]], dict]:
    """Read and validate every input before anything is computed or written."""
    data = []
    for path in opts.events:
        ev = io.read_table(path, "events", io.EVENTS)
        if len(ev["event_id"]) == 0:
            raise DL3InputError(path, "the event list is empty", "event_id")
        data.append((Path(path), ev, io.read_table(path, "observation", io.OBSERVATION),
                     io.read_table(path, "gti", io.GTI)))
    mc = {"gamma": io.read_table(opts.mc, "events", io.MC_EVENTS),
          "gamma_sim": irf.simulation_info(opts.mc, io.read_table(opts.mc, "simulation", io.SIMULATION))}
    if len(mc["gamma"]["true_energy"]) == 0:
        raise DL3InputError(opts.mc, "the MC event list is empty", "true_energy")
    if opts.background_mc is not None:
        mc["proton"] = io.read_table(opts.background_mc, "events", io.MC_EVENTS)
        mc["proton_sim"] = irf.simulation_info(opts.background_mc,
                                               io.read_table(opts.background_mc, "simulation", io.SIMULATION))
    return data, mc


def background_3d_hdu(bkg: u.Quantity, reco_energy_bins: u.Quantity, fov_edges: u.Quantity,
                      extname: str = HDU_NAMES["bkg"], **header_cards) -> fits.BinTableHDU:
    """GADF BKG_3D (pyirf 0.13 writes BKG_2D only): one row, axes ENERG x DETX x DETY, FOVALIGN=ALTAZ.

    ``bkg`` is (n_energy, n_lon, n_lat); FITS stores the reverse order, as in pyirf's writers,
    which is how gammapy's Background3D reads it back (``quantity[0].transpose()``).
    """
    t = QTable()
    e, f = reco_energy_bins.to(u.TeV), fov_edges.to(u.deg)
    t["ENERG_LO"], t["ENERG_HI"] = e[None, :-1], e[None, 1:]
    t["DETX_LO"], t["DETX_HI"] = f[None, :-1], f[None, 1:]
    t["DETY_LO"], t["DETY_HI"] = f[None, :-1], f[None, 1:]
    t["BKG"] = bkg.T[None, ...].to(irf.BACKGROUND_UNIT).astype(np.float32)
    h = fits.Header()
    h["HDUCLASS"], h["HDUDOC"] = "GADF", "https://github.com/open-gamma-ray-astro/gamma-astro-data-formats"
    h["HDUCLAS1"], h["HDUCLAS2"], h["HDUCLAS3"], h["HDUCLAS4"] = "RESPONSE", "BKG", "FULL-ENCLOSURE", "BKG_3D"
    h["FOVALIGN"] = ("ALTAZ", "DETX/DETY: FoV lon/lat aligned with AltAz")
    h[f"CREF{t.colnames.index('BKG') + 1}"] = "(ENERG_LO:ENERG_HI,DETX_LO:DETX_HI,DETY_LO:DETY_HI)"
    for k, v in header_cards.items():
        h[k] = v
    return fits.BinTableHDU(t, header=h, name=extname)


def irf_hdus(irfs: irf.IRFs, obs_id: int) -> list[fits.BinTableHDU]:
    b = irfs.binning
    cards = {"OBS_ID": obs_id, **events.TELESCOPE, **irfs.cuts.cards(irfs.point_like)}
    e_true, offs = b.true_energy * u.TeV, b.fov_offset * u.deg
    hdus = [create_aeff2d_hdu(irfs.aeff, e_true, offs, extname=HDU_NAMES["aeff"], point_like=irfs.point_like, **cards),
            create_energy_dispersion_hdu(irfs.edisp, e_true, b.migration, offs, point_like=irfs.point_like,
                                         extname=HDU_NAMES["edisp"], **cards)]
    if irfs.point_like:
        rad = irfs.cuts.rad_max(b.reco_energy)[:, None] * u.deg
        hdus.append(create_rad_max_hdu(rad, b.reco_energy * u.TeV, [b.fov_offset[0], b.fov_offset[-1]] * u.deg,
                                       extname=HDU_NAMES["rad_max"], **cards))
    if irfs.psf is not None:
        hdus.append(create_psf_table_hdu(irfs.psf, e_true, b.source_offset * u.deg, offs,
                                         extname=HDU_NAMES["psf"], **cards))
    if irfs.bkg is not None:
        hdus.append(create_background_2d_hdu(irfs.bkg, b.reco_energy * u.TeV, b.bkg_offset * u.deg,
                                             extname=HDU_NAMES["bkg"], **cards))
    if irfs.bkg_3d is not None:
        hdus.append(background_3d_hdu(irfs.bkg_3d, b.reco_energy * u.TeV, b.bkg_fov * u.deg, **cards))
    for h in hdus:
        h.header["HDUVERS"] = "0.3"
    return hdus


def gh_cuts_hdu(cuts: irf.Cuts, binning: irf.Binning, point_like: bool, **header_cards) -> fits.BinTableHDU:
    """The energy-dependent gammaness cut as a table HDU (lstchain's GH_CUTS layout: ENERG_LO/HI, THETA_LO/HI,
    GH_CUTS over one offset bin).

    Not a GADF HDU and not listed in the hdu-index; it has no HDUCLAS1=RESPONSE, so GADF readers that
    scan a file for IRFs (gammapy's ``load_irf_dict_from_file``) pass over it silently.
    """
    t = QTable()
    e = np.asarray(cuts.energy_edges) * u.TeV
    off = np.array([binning.fov_offset[0], binning.fov_offset[-1]]) * u.deg
    t["ENERG_LO"], t["ENERG_HI"] = e[None, :-1], e[None, 1:]
    t["THETA_LO"], t["THETA_HI"] = off[None, :-1], off[None, 1:]
    t["GH_CUTS"] = np.asarray(cuts.gh_cuts, dtype=np.float32)[None, None, :]  # FITS order: (offset, energy)
    h = fits.Header()
    h["HDUDOC"] = ("appliance docs/DL3.md", "not a GADF HDU: gammaness cut per E_reco bin")
    h["HDUCLAS1"], h["HDUCLAS2"] = "CUTS", "GH_CUTS"
    h["HDUCLAS3"] = "POINT-LIKE" if point_like else "FULL-ENCLOSURE"
    h[f"CREF{t.colnames.index('GH_CUTS') + 1}"] = "(ENERG_LO:ENERG_HI,THETA_LO:THETA_HI)"
    for k, v in header_cards.items():
        h[k] = v
    return fits.BinTableHDU(t, header=h, name="GH_CUTS")


def convert(opts: ConvertOptions) -> ConvertResult:
    out = Path(opts.out)
    if out.exists() and not opts.force:
        raise DL3InputError(out, "exists; remove it or pass --force to replace it")
    if opts.cuts.theta_containment is not None and not opts.point_like:
        raise DL3InputError("--theta-containment", "is for point-like IRFs (RAD_MAX_2D); full-enclosure has no "
                                                   "direction cut")
    data, mc = read_inputs(opts)
    cuts = opts.cuts.resolve(mc["gamma"], opts.binning.reco_energy, opts.point_like, opts.mc)
    gamma = irf.mc_table(mc["gamma"], cuts)
    proton = irf.mc_table(mc["proton"], cuts, fov_coords=opts.background == "3d") if "proton" in mc else None
    irfs = irf.compute(gamma, mc["gamma_sim"], point_like=opts.point_like, binning=opts.binning, cuts=cuts,
                       proton=proton, proton_sim=mc.get("proton_sim"), background=opts.background)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        observations, hdu_rows = [], []
        cut_cards = cuts.cards(opts.point_like)
        event_cards = {**cut_cards, **cuts.table_cards()}
        for path, ev, obs, gti in data:
            gh_pass = cuts.gh_mask(ev["reco_energy"], ev["gammaness"])
            for obs_id in np.unique(ev["obs_id"]).astype(int):
                info, gti_met, shift = events.observation(path, int(obs_id), obs, gti)
                sel = (ev["obs_id"] == obs_id) & gh_pass
                sel &= (ev["time"] + shift >= info.tstart) & (ev["time"] + shift <= info.tstop)
                evo = {k: v[sel] for k, v in ev.items()}
                name = f"obs_{obs_id:06d}.fits.gz"
                hdus = [events.events_hdu(info, evo, shift, event_cards), events.gti_hdu(info, gti_met),
                        events.pointing_hdu(info), *irf_hdus(irfs, int(obs_id))]
                extra = [gh_cuts_hdu(cuts, opts.binning, opts.point_like, OBS_ID=int(obs_id), **events.TELESCOPE,
                                     **cut_cards)] if cuts.gh_efficiency is not None else []
                write_fits(tmp / name, fits.HDUList([fits.PrimaryHDU(), *hdus, *extra]))
                for h in hdus:
                    hdu_rows.append((int(obs_id), _hdu_type(h.header), _hdu_class(h.header), ".", name, h.name,
                                     (tmp / name).stat().st_size))
                observations.append({**info.__dict__, "n_events": int(sel.sum()), "file": name})
        _write_obs_index(tmp / "obs-index.fits.gz", observations)
        _write_hdu_index(tmp / "hdu-index.fits.gz", hdu_rows)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.rename(old / "x")
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ConvertResult(out, opts.point_like, observations, [h.header["HDUCLAS4"] for h in irf_hdus(irfs, 0)],
                         len(gamma), _cuts_json(cuts, opts))


def _cuts_json(cuts: irf.Cuts, opts: ConvertOptions) -> dict:
    out: dict = {"evtsel": cuts.cards(opts.point_like)["EVTSEL"][0]}
    if cuts.energy_dependent:
        out["reco_energy_edges_tev"] = [float(x) for x in cuts.energy_edges]
    if cuts.gh_cuts is not None:
        out["gammaness_cut_per_bin"] = [round(float(x), 6) for x in cuts.gh_cuts]
    if cuts.theta_cuts is not None:
        out["rad_max_deg_per_bin"] = [round(float(x), 6) for x in cuts.theta_cuts]
    return out


def _source_date() -> str | None:
    """SOURCE_DATE_EPOCH as a FITS date (reproducible builds' convention), or None when it is not set."""
    sde = os.environ.get("SOURCE_DATE_EPOCH", "")
    return datetime.fromtimestamp(int(sde), UTC).strftime("%Y-%m-%dT%H:%M:%S") if sde.isdigit() else None


def write_fits(path: Path, hdul: fits.HDUList) -> None:
    """Gzipped FITS with CHECKSUM/DATASUM whose bytes depend on the content only (given SOURCE_DATE_EPOCH).

    astropy's ``writeto(checksum=True)`` stamps the cards' comments with the current time and gzip stamps
    its header with the mtime and file name, and pyirf writes DATE (now) in every IRF HDU, so two
    conversions of the same input differed in bytes and in the hdu-index SIZE column. Here the HDUs
    are serialised once, read back (headers final), DATE set to SOURCE_DATE_EPOCH when that is set,
    checksummed with a comment naming that time, and compressed with mtime 0 and no name.
    """
    raw = _bytesio.BytesIO()
    hdul.writeto(raw)
    raw.seek(0)
    fixed = _source_date()
    when = fixed or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    final = _bytesio.BytesIO()
    with fits.open(raw) as back:
        for h in back:
            if fixed and "DATE" in h.header:
                h.header["DATE"] = fixed
            h.add_datasum(when=f"data unit checksum updated {when}")
            h.add_checksum(when=f"HDU checksum updated {when}", override_datasum=True)
        back.writeto(final)
    with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
        gz.write(final.getbuffer())


def _hdu_type(h: fits.Header) -> str:
    c1, c2 = h["HDUCLAS1"], h.get("HDUCLAS2", "")
    if c1 != "RESPONSE":
        return c1.lower()
    return {"EFF_AREA": "aeff", "EDISP": "edisp", "PSF": "psf", "BKG": "bkg", "RAD_MAX": "rad_max"}[c2]


def _hdu_class(h: fits.Header) -> str:
    return h["HDUCLAS4"].lower() if h["HDUCLAS1"] == "RESPONSE" else h["HDUCLAS1"].lower()


def _index_header(kind: str, extra: dict[str, object]) -> fits.Header:
    h = fits.Header()
    for k, v in {**events.GADF, "HDUCLAS1": "INDEX", "HDUCLAS2": kind, **events.TELESCOPE, **extra}.items():
        h[k] = v
    return h


def _write_obs_index(path: Path, obs: list[dict]) -> None:
    def col(name: str, fmt: str, key: str, unit: str | None = None) -> fits.Column:
        return fits.Column(name, fmt, unit=unit, array=np.array([o[key] for o in obs]))
    cols = [col("OBS_ID", "K", "obs_id"), col("RA_PNT", "D", "ra_pnt", "deg"), col("DEC_PNT", "D", "dec_pnt", "deg"),
            col("ALT_PNT", "D", "alt_pnt", "deg"), col("AZ_PNT", "D", "az_pnt", "deg"),
            fits.Column("ZEN_PNT", "D", unit="deg", array=np.array([90.0 - o["alt_pnt"] for o in obs])),
            col("ONTIME", "D", "ontime", "s"), col("LIVETIME", "D", "livetime", "s"), col("DEADC", "D", "deadc"),
            col("TSTART", "D", "tstart", "s"), col("TSTOP", "D", "tstop", "s"),
            fits.Column("DATE-OBS", "10A", array=np.array([o["date_obs"][:10] for o in obs])),
            fits.Column("DATE-END", "10A", array=np.array([o["date_end"][:10] for o in obs])),
            fits.Column("N_TELS", "J", array=np.full(len(obs), 2)),
            fits.Column("OBJECT", "16A", array=np.array(["Crab"] * len(obs))),
            col("EVENT_COUNT", "K", "n_events")]
    o0 = obs[0]
    extra = {**events.time_cards(), "GEOLON": o0["geolon"], "GEOLAT": o0["geolat"], "ALTITUDE": o0["altitude"]}
    write_fits(path, fits.HDUList([fits.PrimaryHDU(),
                                   fits.BinTableHDU.from_columns(cols, header=_index_header("OBS", extra), name="OBS_INDEX")]))


def _write_hdu_index(path: Path, rows: list[tuple]) -> None:
    names = ("OBS_ID", "HDU_TYPE", "HDU_CLASS", "FILE_DIR", "FILE_NAME", "HDU_NAME", "SIZE")
    fmts = ("K", "16A", "16A", "64A", "64A", "24A", "K")
    cols = [fits.Column(n, f, array=np.array([r[i] for r in rows]), unit="byte" if n == "SIZE" else None)
            for i, (n, f) in enumerate(zip(names, fmts, strict=False))]
    write_fits(path, fits.HDUList([fits.PrimaryHDU(),
                                   fits.BinTableHDU.from_columns(cols, header=_index_header("HDU", {}), name="HDU_INDEX")]))
