"""IRFs from reconstructed Monte Carlo with pyirf: the functional core of ``dl3 convert``.

Pure: columns in, Quantities out. The binning and the event selection are frozen values recorded
in every IRF header, so a product says which cuts made it. Offsets use the same spherical formula
as pyirf (``angular_separation``), in plain numpy on float64 arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import QTable
from pyirf.irf import background_2d, effective_area_per_energy_and_fov, energy_dispersion, psf_table
from pyirf.simulations import SimulatedEventsInfo
from pyirf.spectral import PowerLaw, calculate_event_weights

from appliance.dl3 import model
from appliance.dl3.errors import DL3InputError
from appliance.dl3.io import Columns

BACKGROUND_UNIT = u.Unit("MeV-1 s-1 sr-1")  # GADF's BKG unit
BACKGROUND_KINDS = ("2d", "3d")  # BKG_2D (radially symmetric) or BKG_3D (FOV lon x lat)


def _default_true_energy() -> np.ndarray:
    return np.geomspace(0.02, 50.0, 35)  # 10 bins per decade: aeff interpolation error < 1 % above 0.1 TeV


@dataclass(frozen=True)
class Binning:
    true_energy: np.ndarray = field(default_factory=_default_true_energy)  # TeV edges
    reco_energy: np.ndarray = field(default_factory=lambda: np.geomspace(0.02, 50.0, 18))
    fov_offset: np.ndarray = field(default_factory=lambda: np.linspace(0.0, 2.5, 11))  # deg
    migration: np.ndarray = field(default_factory=lambda: np.geomspace(0.2, 5.0, 61))
    source_offset: np.ndarray = field(default_factory=lambda: np.linspace(0.0, 1.0, 101))  # deg
    bkg_offset: np.ndarray = field(default_factory=lambda: np.linspace(0.0, 3.0, 13))  # deg
    # BKG_3D field-of-view lon/lat edges (deg): 0.5 deg pixels covering the 3 deg proton viewcone
    bkg_fov: np.ndarray = field(default_factory=lambda: np.linspace(-3.0, 3.0, 13))


@dataclass(frozen=True)
class Cuts:
    """The event selection; applied to data and MC alike, written to every header."""

    gammaness: float = model.GAMMANESS_CUT
    theta: float = model.THETA_CUT  # deg, point-like only

    def cards(self, point_like: bool) -> dict[str, object]:
        cards: dict[str, object] = {"GH_CUT": (self.gammaness, "gammaness > GH_CUT selected")}
        if point_like:
            cards["RAD_MAX"] = (float(self.theta), "[deg] global direction cut")
        cards["EVTSEL"] = (f"gammaness>{self.gammaness}" + (f" theta<{self.theta}deg" if point_like else ""),
                           "event selection")
        return cards


@dataclass
class IRFs:
    point_like: bool
    binning: Binning
    cuts: Cuts
    aeff: u.Quantity  # (n_true_energy, n_offset) m2
    edisp: np.ndarray  # (n_true_energy, n_migra, n_offset)
    n_selected: np.ndarray  # selected MC gammas per (energy, offset) bin: the statistics of aeff
    psf: u.Quantity | None = None  # (n_true_energy, n_offset, n_source_offset) sr-1
    bkg: u.Quantity | None = None  # BKG_2D: (n_reco_energy, n_bkg_offset) MeV-1 s-1 sr-1
    bkg_3d: u.Quantity | None = None  # BKG_3D: (n_reco_energy, n_fov_lon, n_fov_lat) MeV-1 s-1 sr-1
    n_bkg: np.ndarray | None = None  # selected MC protons per reco-energy bin: the statistics of the background


def simulation_info(path: Path, sim: Columns) -> SimulatedEventsInfo:
    """pyirf's simulated-spectrum description from the run_config rows (summed over runs)."""
    if len(sim["num_showers"]) == 0:
        raise DL3InputError(path, "simulation table is empty: no simulated-spectrum information", "num_showers")
    for col in ("energy_range_min", "energy_range_max", "spectral_index", "max_scatter_range",
                "min_viewcone_radius", "max_viewcone_radius"):
        if not np.all(sim[col] == sim[col][0]):
            raise DL3InputError(path, "differs between simulation runs; convert them separately", col)
    n = int(np.sum(sim["num_showers"] * sim["shower_reuse"]))
    if n <= 0:
        raise DL3InputError(path, "no simulated showers", "num_showers")
    if sim["spectral_index"][0] > -1:
        raise DL3InputError(path, f"spectral index {sim['spectral_index'][0]} must be <= -1 (sign included)",
                            "spectral_index")
    return SimulatedEventsInfo(
        n_showers=n, energy_min=sim["energy_range_min"][0] * u.TeV, energy_max=sim["energy_range_max"][0] * u.TeV,
        max_impact=sim["max_scatter_range"][0] * u.m, spectral_index=float(sim["spectral_index"][0]),
        viewcone_min=sim["min_viewcone_radius"][0] * u.deg, viewcone_max=sim["max_viewcone_radius"][0] * u.deg)


def mc_table(mc: Columns, cuts: Cuts, fov_coords: bool = False) -> QTable:
    """The gammaness-selected MC as the QTable pyirf wants, with offsets and theta added.

    ``fov_coords`` adds the reconstructed direction in AltAz-aligned field-of-view coordinates
    (``reco_fov_lon``, ``reco_fov_lat``), which only BKG_3D needs.
    """
    sel = mc["gammaness"] > cuts.gammaness
    t = QTable()
    t["true_energy"] = mc["true_energy"][sel] * u.TeV
    t["reco_energy"] = mc["reco_energy"][sel] * u.TeV
    paz, palt = mc["pointing_az"][sel], mc["pointing_alt"][sel]
    t["true_source_fov_offset"] = model.separation(paz, palt, mc["true_az"][sel], mc["true_alt"][sel]) * u.deg
    t["reco_source_fov_offset"] = model.separation(paz, palt, mc["reco_az"][sel], mc["reco_alt"][sel]) * u.deg
    t["theta"] = model.separation(mc["true_az"][sel], mc["true_alt"][sel], mc["reco_az"][sel], mc["reco_alt"][sel]) * u.deg
    if fov_coords:
        lon, lat = model.fov_lonlat(mc["reco_az"][sel], mc["reco_alt"][sel], paz, palt)
        t["reco_fov_lon"], t["reco_fov_lat"] = lon * u.deg, lat * u.deg
    return t


def proton_spectrum() -> PowerLaw:
    """The cosmic-ray proton flux the background MC is weighted to (``model.proton_flux``)."""
    return PowerLaw(normalization=model.PROTON_NORM / (u.TeV * u.s * u.m**2 * u.sr), index=-model.PROTON_INDEX)


def fov_pixel_solid_angle(edges_deg: np.ndarray) -> u.Quantity:
    """Solid angle of each (lon, lat) pixel of a field-of-view grid: dlon * (sin lat1 - sin lat0).

    Exact for the spherical offset frame the coordinates live in (lon along the offset equator).
    """
    e = np.radians(edges_deg)
    return (np.diff(e)[:, None] * np.diff(np.sin(e))[None, :]) * u.sr


def background_3d(events: QTable, reco_energy_bins: u.Quantity, fov_edges: u.Quantity, t_obs: u.Quantity) -> u.Quantity:
    """Background rate per reco energy, time and solid angle in field-of-view lon x lat pixels.

    pyirf (0.13) has ``background_2d`` only; this is its 3-D sibling: the same weighted histogram,
    divided by the energy bin width, the pixel's solid angle and the time the weights are for.
    Shape (n_reco_energy, n_fov_lon, n_fov_lat).
    """
    edges = fov_edges.to_value(u.deg)
    hist, _ = np.histogramdd(
        (events["reco_energy"].to_value(u.TeV), events["reco_fov_lon"].to_value(u.deg),
         events["reco_fov_lat"].to_value(u.deg)),
        bins=(reco_energy_bins.to_value(u.TeV), edges, edges), weights=events["weight"])
    per_energy = hist / np.diff(reco_energy_bins)[:, None, None]
    return (per_energy / t_obs / fov_pixel_solid_angle(edges)[None]).to(BACKGROUND_UNIT)


def compute(gamma: QTable, gamma_sim: SimulatedEventsInfo, *, point_like: bool, binning: Binning | None = None,
            cuts: Cuts | None = None, proton: QTable | None = None,
            proton_sim: SimulatedEventsInfo | None = None, background: str = "2d") -> IRFs:
    binning, cuts = binning or Binning(), cuts or Cuts()
    sel = gamma[gamma["theta"] < cuts.theta * u.deg] if point_like else gamma
    e_true, offs = binning.true_energy * u.TeV, binning.fov_offset * u.deg
    aeff = effective_area_per_energy_and_fov(sel, gamma_sim, e_true, offs)
    n_sel, _, _ = np.histogram2d(sel["true_energy"].to_value(u.TeV), sel["true_source_fov_offset"].to_value(u.deg),
                                 bins=[binning.true_energy, binning.fov_offset])
    edisp = energy_dispersion(sel, e_true, offs, binning.migration)
    irfs = IRFs(point_like, binning, cuts, aeff.to(u.m**2), edisp, n_sel)
    if not point_like:
        irfs.psf = psf_table(gamma, e_true, binning.source_offset * u.deg, offs)
        if proton is not None and proton_sim is not None:
            t_obs = 1 * u.h
            proton = proton.copy()
            proton["weight"] = calculate_event_weights(
                proton["true_energy"], proton_spectrum(), PowerLaw.from_simulation(proton_sim, t_obs))
            e_reco = binning.reco_energy * u.TeV
            if background == "3d":
                irfs.bkg_3d = background_3d(proton, e_reco, binning.bkg_fov * u.deg, t_obs)
            else:
                irfs.bkg = background_2d(proton, e_reco, binning.bkg_offset * u.deg, t_obs)
            irfs.n_bkg, _ = np.histogram(proton["reco_energy"].to_value(u.TeV), bins=binning.reco_energy)
    return irfs
