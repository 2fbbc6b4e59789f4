"""The 1-D spectral analysis of a point-like DL3 product with gammapy: the proof's fit and the recipe's.

Reflected (wobble) regions around the source, WStat forward folding, a log-parabola with amplitude,
alpha and beta free, 0.08-20 TeV, observations stacked; every gammapy warning is an error (the
product must read cleanly). gammapy is imported on call: the converter itself does not need it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SpectralFit:
    success: bool  # the minimisation and its covariance both converged
    observations: list[int]
    excess: float  # stacked excess counts in the ON region
    parameters: dict[str, tuple[float, float, str]] = field(default_factory=dict)  # name -> value, error, unit

    def pull(self, name: str, truth: float) -> float:
        value, error, _ = self.parameters[name]
        return (value - truth) / error


def fit_log_parabola(dl3_dir: Path, ra: float, dec: float) -> SpectralFit:
    """Fit the source at (ra, dec) (deg, ICRS) in the point-like DL3 directory ``dl3_dir``."""
    import warnings

    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from gammapy.data import DataStore
    from gammapy.datasets import Datasets, SpectrumDataset
    from gammapy.makers import (
        ReflectedRegionsBackgroundMaker,
        SpectrumDatasetMaker,
        WobbleRegionsFinder,
    )
    from gammapy.maps import MapAxis, RegionGeom
    from gammapy.modeling import Fit
    from gammapy.modeling.models import LogParabolaSpectralModel, SkyModel
    from regions import PointSkyRegion

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obs = DataStore.from_dir(dl3_dir).get_observations(required_irf="point-like")
        on = PointSkyRegion(SkyCoord(ra, dec, unit="deg", frame="icrs"))
        e_reco = MapAxis.from_energy_bounds(0.08, 20, 12, unit="TeV", name="energy")
        e_true = MapAxis.from_energy_bounds(0.03, 40, 30, unit="TeV", name="energy_true")
        empty = SpectrumDataset.create(geom=RegionGeom.create(region=on, axes=[e_reco]), energy_axis_true=e_true)
        maker = SpectrumDatasetMaker(containment_correction=False, selection=["counts", "exposure", "edisp"])
        bkg = ReflectedRegionsBackgroundMaker(region_finder=WobbleRegionsFinder(n_off_regions=3))
        sets = Datasets([bkg.run(maker.run(empty.copy(name=str(o.obs_id)), o), o) for o in obs])
        stacked = Datasets([sets.stack_reduce()])
        lp = LogParabolaSpectralModel(amplitude=1e-11 * u.Unit("cm-2 s-1 TeV-1"), reference=1 * u.TeV,
                                      alpha=2.0, beta=0.0)
        stacked.models = [SkyModel(spectral_model=lp, name="crab")]
        result = Fit().run(stacked)
    return SpectralFit(bool(result.success and result.covariance_result.success), [int(o.obs_id) for o in obs],
                       float(stacked[0].excess.data.sum()),
                       {p: (float(lp.parameters[p].value), float(lp.parameters[p].error), str(lp.parameters[p].unit))
                        for p in ("amplitude", "alpha", "beta")})
