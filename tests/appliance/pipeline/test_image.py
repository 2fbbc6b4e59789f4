"""The image stage with the real detectors: catalogs written, injected sources recovered."""

from __future__ import annotations

import shutil

import pytest
from astropy.io.votable import parse_single_table
from astropy.table import Table

from appliance.pipeline.errors import UsageProblem
from appliance.pipeline.stages import list_observations, run_image, run_products
from appliance.pipeline.synth import load_truth
from tests.prereq import require


@pytest.fixture(scope="module")
def small(archive_root, tmp_path_factory):
    """Four decidable observations copied out of the session archive, with their truth."""
    root = tmp_path_factory.mktemp("small")
    truth = load_truth(archive_root)
    folders = [f for f in list_observations(archive_root) if truth[f]["expect"] == "done"][:4]
    for f in folders:
        shutil.copytree(archive_root / f, root / f)
    shutil.copy(archive_root / "truth.json", root / "truth.json")
    work = root.parent / (root.name + "-work")
    run_products(root, work, parallel=1, progress=False)
    return root, work, folders


def test_image_stage_all_detectors(small):
    require(shutil.which("source-extractor") is not None, "Debian package source-extractor")
    root, work, folders = small
    summary, quality = run_image(root, work, parallel=2, progress=False)
    assert summary.ok and summary.count("done") == len(folders), summary.report()
    q = quality.per_detector()
    assert set(q) == {"sextractor", "aegean", "emcee"}
    for name, d in q.items():
        assert d["completeness_snr_ge_10"] is not None and d["completeness_snr_ge_10"] >= 0.9, (name, d)
        assert 0.85 <= d["flux_ratio_median"] <= 1.15, (name, d)
    cat = summary.items[0].result["catalogs"]
    t = Table.read(cat[0])
    v = parse_single_table(cat[1]).to_table()
    assert len(t) == len(v) > 0 and set(t["detector"]) <= {"sextractor", "aegean", "emcee"}
    assert t["ra"].unit == "deg"
    # a re-run resumes: nothing is processed again
    again, _ = run_image(root, work, parallel=1, progress=False)
    assert again.processed == 0 and again.count("done") == len(folders)


def test_unknown_detector_is_a_usage_error(small):
    root, work, _ = small
    with pytest.raises(UsageProblem, match="choose from"):
        run_image(root, work, detectors=("sextractor", "daophot"), progress=False)
