"""Synthetic Crab data sets for the DL3 tests, generated once per session (real generator, real files)."""

from __future__ import annotations

import pytest

from appliance.dl3.gadf import ConvertOptions, convert
from appliance.dl3.generate import GenerateOptions, generate

# The proof data set: 4 wobble observations of 2400 s (about 9000 source gammas before cuts) and 1.2e7 thrown
# MC gammas (enough for about 80 effective-area bins with >= 3600 selected events). Seed fixed: see test_fit.
PROOF = dict(seed=3, n_obs=4, obs_time=2400.0, gamma_showers=12_000_000, proton_showers=400_000)


@pytest.fixture(scope="session")
def proof(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("dl3-proof")
    truth = generate(GenerateOptions(out=root / "synth", **PROOF))
    fits_dir, h5_dir = root / "synth" / "fits", root / "synth" / "hdf5"
    ids = truth["obs_ids"]
    pl = convert(ConvertOptions(events=tuple(fits_dir / f"dl2_obs{i}.fits" for i in ids),
                                mc=fits_dir / "mc_gamma.fits", out=root / "dl3-pl", point_like=True))
    fe = convert(ConvertOptions(events=tuple(h5_dir / f"dl2_obs{i}.h5" for i in ids), mc=h5_dir / "mc_gamma.h5",
                                out=root / "dl3-fe", point_like=False, background_mc=h5_dir / "mc_proton.h5"))
    return {"root": root, "truth": truth, "pl": pl, "fe": fe}


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A quick data set for the bad-input and check tests (one short observation, small MC)."""
    root = tmp_path_factory.mktemp("dl3-small")
    truth = generate(GenerateOptions(out=root / "synth", seed=7, n_obs=1, obs_time=120.0, gamma_showers=300_000,
                                     proton_showers=50_000))
    return {"root": root, "truth": truth, "fits": root / "synth" / "fits", "hdf5": root / "synth" / "hdf5"}
