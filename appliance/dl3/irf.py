"""IRFs from reconstructed Monte Carlo with pyirf: the functional core of ``dl3 convert``.

Pure: columns in, Quantities out. The binning and the event selection are frozen values recorded
in every IRF header, so a product says which cuts made it. Offsets use the same spherical formula
as pyirf (``angular_separation``), in plain numpy on float64 arrays.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import QTable
from pyirf.cuts import calculate_percentile_cut, evaluate_binned_cut
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


MIN_CUT_EVENTS = 100  # MC gammas a reco-energy bin needs for its own energy-dependent cut


@dataclass(frozen=True)
class Cuts:
    """The event selection; applied to data and MC alike, written to every header.

    Global (the default): ``gammaness > gammaness`` and, point-like, ``theta < theta``. Energy-dependent
    (lstchain's and pyirf's way): ``gh_efficiency`` F keeps the fraction F of the MC gammas in each
    reconstructed-energy bin (``gammaness >= cut(E)``), ``theta_containment`` F (point-like) cuts each
    bin at the theta containing F of the gammas that passed the gammaness cut (``theta <= cut(E)``,
    RAD_MAX_2D). Both are computed from the MC by ``resolve`` (pyirf's ``calculate_percentile_cut``)
    and applied with pyirf's ``evaluate_binned_cut``, so events outside the reco-energy binning are
    dropped. The resolved per-bin values are kept here (``energy_edges``, ``gh_cuts``, ``theta_cuts``).
    """

    gammaness: float = model.GAMMANESS_CUT
    theta: float = model.THETA_CUT  # deg, point-like only
    gh_efficiency: float | None = None
    theta_containment: float | None = None
    energy_edges: tuple[float, ...] | None = None  # TeV, reco energy: the bins of the resolved cuts
    gh_cuts: tuple[float, ...] | None = None  # per bin, when gh_efficiency is set
    theta_cuts: tuple[float, ...] | None = None  # deg per bin, when theta_containment is set

    @property
    def energy_dependent(self) -> bool:
        return self.gh_efficiency is not None or self.theta_containment is not None

    def _table(self, values: tuple[float, ...] | None, what: str) -> QTable:
        if values is None or self.energy_edges is None:
            raise ValueError(f"energy-dependent {what} cut not resolved: call Cuts.resolve first")
        e = np.asarray(self.energy_edges)
        return QTable({"low": e[:-1], "high": e[1:], "cut": np.asarray(values)})

    def gh_mask(self, reco_energy: np.ndarray, gammaness: np.ndarray) -> np.ndarray:
        """Events (reco energy in TeV) that pass the gammaness cut."""
        if self.gh_efficiency is None:
            return np.asarray(gammaness) > self.gammaness
        return evaluate_binned_cut(np.asarray(gammaness, dtype=float), np.asarray(reco_energy, dtype=float),
                                   self._table(self.gh_cuts, "gammaness"), operator.ge)

    def theta_mask(self, reco_energy: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Events (reco energy in TeV, theta in deg) that pass the point-like direction cut."""
        if self.theta_containment is None:
            return np.asarray(theta) < self.theta
        return evaluate_binned_cut(np.asarray(theta, dtype=float), np.asarray(reco_energy, dtype=float),
                                   self._table(self.theta_cuts, "theta"), operator.le)

    def rad_max(self, reco_energy_edges: np.ndarray) -> np.ndarray:
        """The direction cut (deg) per reco-energy bin of ``reco_energy_edges``: RAD_MAX_2D's content."""
        if self.theta_containment is None:
            return np.full(len(reco_energy_edges) - 1, float(self.theta))
        if self.energy_edges is None or not np.array_equal(np.asarray(self.energy_edges), reco_energy_edges):
            raise ValueError("the theta cuts were resolved on other reco-energy bins")
        return np.asarray(self.theta_cuts, dtype=float)

    def cards(self, point_like: bool) -> dict[str, object]:
        cards: dict[str, object] = {}
        if self.gh_efficiency is None:
            cards["GH_CUT"] = (self.gammaness, "gammaness > GH_CUT selected")
            gh = f"gammaness>{self.gammaness}"
        else:
            cards["GH_EFF"] = (float(self.gh_efficiency), "MC gamma fraction kept per reco-energy bin")
            gh = f"gammaness>=cut(E) eff {self.gh_efficiency}"
        th = ""
        if point_like and self.theta_containment is None:
            cards["RAD_MAX"] = (float(self.theta), "[deg] global direction cut")
            th = f" theta<{self.theta}deg"
        elif point_like:
            cards["TH_CONT"] = (float(self.theta_containment), "theta containment per E_reco bin (RAD_MAX_2D)")
            th = f" theta<=cut(E) cont {self.theta_containment}"
        cards["EVTSEL"] = (gh + th, "event selection")
        return cards

    def table_cards(self) -> dict[str, object]:
        """The energy-dependent gammaness cut as EVENTS header keywords: GHCUTn per reco-energy bin."""
        if self.gh_efficiency is None:
            return {}
        e = np.asarray(self.energy_edges)
        cards: dict[str, object] = {"GHCUTN": (len(self.gh_cuts), "bins of the energy-dependent gammaness cut")}
        for i, (lo, hi, c) in enumerate(zip(e[:-1], e[1:], self.gh_cuts, strict=True), start=1):
            cards[f"GHCUT{i}"] = (round(float(c), 6), f"gammaness cut, E_reco {lo:.4g}-{hi:.4g} TeV")
        cards["COMMENT"] = ("Energy-dependent gammaness cut: GHCUTn applies to reconstructed energies in bin n "
                            "(also the GH_CUTS HDU of this file, lstchain's layout); events outside the bins "
                            "were dropped.")
        return cards

    def resolve(self, mc: Columns, reco_energy_edges: np.ndarray, point_like: bool, path: object = "MC") -> Cuts:
        """The per-bin cut values from the (unselected) MC gammas; a global selection is returned as is."""
        if not self.energy_dependent:
            return self
        edges = np.asarray(reco_energy_edges, dtype=float)
        e = np.asarray(mc["reco_energy"], dtype=float)
        resolved = replace(self, energy_edges=tuple(edges))
        if self.gh_efficiency is not None:
            gh = _percentile_cut(np.asarray(mc["gammaness"], dtype=float), e, edges, 100 * (1 - self.gh_efficiency),
                                 path, "gammaness")
            resolved = replace(resolved, gh_cuts=tuple(gh))
        if point_like and self.theta_containment is not None:
            sel = resolved.gh_mask(e, mc["gammaness"])
            theta = model.separation(mc["true_az"][sel], mc["true_alt"][sel], mc["reco_az"][sel], mc["reco_alt"][sel])
            resolved = replace(resolved, theta_cuts=tuple(
                _percentile_cut(theta, e[sel], edges, 100 * self.theta_containment, path, "reco_alt")))
        return resolved


def _percentile_cut(values: np.ndarray, energy: np.ndarray, edges: np.ndarray, percentile: float,
                    path: object, column: str) -> np.ndarray:
    """pyirf's percentile cut per energy bin; bins with fewer than MIN_CUT_EVENTS take the nearest full bin's."""
    table = calculate_percentile_cut(values, energy * u.TeV, edges * u.TeV, fill_value=np.nan, percentile=percentile,
                                     min_events=MIN_CUT_EVENTS)
    cut = np.asarray(table["cut"], dtype=float)
    full = np.flatnonzero(np.asarray(table["n_events"]) >= MIN_CUT_EVENTS)
    if len(full) == 0:
        raise DL3InputError(path, f"no reco-energy bin has {MIN_CUT_EVENTS} MC gammas for an energy-dependent cut",
                            column)
    centres = np.sqrt(edges[:-1] * edges[1:])
    nearest = full[np.argmin(np.abs(np.log(centres[:, None] / centres[full][None, :])), axis=1)]
    return cut[nearest]


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
    sel = cuts.gh_mask(mc["reco_energy"], mc["gammaness"])
    t = QTable()
    t["true_energy"] = mc["true_energy"][sel] * u.TeV
    t["reco_energy"] = mc["reco_energy"][sel] * u.TeV
    paz, palt = mc["pointing_az"][sel], mc["pointing_alt"][sel]
    raz, ralt = mc["reco_az"][sel], mc["reco_alt"][sel]
    true_off, reco_off, theta = model.source_offsets(paz, palt, mc["true_az"][sel], mc["true_alt"][sel], raz, ralt)
    t["true_source_fov_offset"] = true_off * u.deg
    t["reco_source_fov_offset"] = reco_off * u.deg
    t["theta"] = theta * u.deg
    if fov_coords:
        lon, lat = model.fov_lonlat(raz, ralt, paz, palt)
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
    sel = gamma[cuts.theta_mask(gamma["reco_energy"].to_value(u.TeV), gamma["theta"].to_value(u.deg))] \
        if point_like else gamma
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
