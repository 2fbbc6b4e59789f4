"""The products stage on a generated archive: no classifier error, XML valid, bad input flagged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from appliance.pipeline import classify
from appliance.pipeline.errors import BadInput
from appliance.pipeline.products import confusion, read_xml, validate, write_xml
from appliance.pipeline.stages import list_observations, run_products
from appliance.pipeline.synth import generate, load_truth, primary_beam


def test_generator_is_deterministic_and_has_truth(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, observations=5, seed=3, size=64)
    generate(b, observations=5, seed=3, size=64)
    ta, tb = json.loads((a / "truth.json").read_text()), json.loads((b / "truth.json").read_text())
    assert ta == tb
    kinds = {k for o in ta["observations"] for k in o["files"].values()}
    assert {"pb", "corrected"} <= kinds
    assert all(o["sources"] for o in ta["observations"])
    assert sorted(list_observations(a)) == sorted(o["folder"] for o in ta["observations"])


def test_fft_concentration_separates_beam_from_image():
    rng = np.random.default_rng(0)
    beam = primary_beam(128, 80)
    noise = rng.normal(size=(128, 128))
    assert classify.concentration(beam) > 0.95
    assert classify.concentration(noise) < 0.05
    assert classify.is_beam(beam)[0] and not classify.is_beam(noise)[0]


def test_beam_decides_which_image_is_uncorrected():
    rng = np.random.default_rng(1)
    pb = primary_beam(64, 40)
    unc = rng.normal(size=(64, 64))
    cor = unc / pb
    assert classify.which_uncorrected(unc, cor, pb).uncorrected == 0
    assert classify.which_uncorrected(cor, unc, pb).uncorrected == 1
    other = rng.normal(size=(64, 64))
    w = classify.which_uncorrected(other, cor, pb)
    assert w.uncorrected is None and "neither image" in w.reason


def test_calibrators_by_name():
    assert classify.is_calibrator("J1924-2914_bp.spw25.mfs.I.pbcor.fits")
    assert classify.is_calibrator("uid___A002_X1.J0423-0120_ph.fits")
    assert not classify.is_calibrator("SRC012_b6_flux.fits")  # a flux profile = a beam
    assert not classify.is_calibrator("member.uid___A001_X1_X2.SRC1_sci.spw25.cont.I.pb.fits")


def test_products_no_classifier_error(archive_root, tmp_path):
    summary, xml = run_products(archive_root, tmp_path / "work", parallel=1, progress=False)
    assert summary.ok and summary.count("done") >= 30
    validate(xml)  # the stage's validator (lxml, libxml2) ...
    import xmlschema

    from appliance.pipeline.products import XSD

    xmlschema.XMLSchema(str(XSD)).validate(str(xml))  # ... and an independent one (pure Python)
    obs = read_xml(xml)
    conf = confusion(obs, load_truth(archive_root))
    assert conf.errors == 0, conf.report()
    assert conf.table["primaryBeam"]["primaryBeam"] == summary.count("done")
    # an observation without its uncorrected image gets one rebuilt as corrected x beam
    rebuilt = [f for o in obs for f in o.files if f.origin == "rebuilt"]
    assert rebuilt
    from appliance.pipeline.fitsimage import read_image

    o = next(o for o in obs if any(f.origin == "rebuilt" for f in o.files))
    d = archive_root / o.folder
    cor = read_image(d / o.path_of("corrected")).data
    pb = read_image(d / o.path_of("primaryBeam")).data
    unc = read_image(tmp_path / "work" / o.path_of("uncorrected")).data
    ok = np.isfinite(unc)
    assert np.allclose(unc[ok], (cor * pb)[ok], rtol=1e-5)


def test_xml_that_fails_its_schema_is_refused(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text('<products xmlns="urn:appliance:pipeline:products:1" root="/x" generator="g">'
                   '<observation id="a" folder="a" status="maybe"/></products>')
    with pytest.raises(BadInput, match="does not follow products.xsd: line 1: .*status"):
        validate(bad)  # the message names the line and the offending attribute
    with pytest.raises(BadInput, match="does not follow products.xsd"):
        read_xml(bad)
    (tmp_path / "notxml.xml").write_text("<products")
    with pytest.raises(BadInput, match="does not follow products.xsd"):
        validate(tmp_path / "notxml.xml")
    with pytest.raises(BadInput, match="does not follow products.xsd"):
        validate(tmp_path / "missing.xml")
    write_xml(tmp_path / "empty.xml", [], "/x")
    validate(tmp_path / "empty.xml")


def test_a_worker_forked_during_another_threads_validation_validates(tmp_path):
    """The web server's request threads validate products documents while a run from the page
    forks its workers: a worker forked while the schema lock was held must not wait for it."""
    from appliance.pipeline import products
    from tests.forking import fork_while_held

    write_xml(tmp_path / "one.xml", [], "/x")

    def child() -> int:
        validate(tmp_path / "one.xml")
        return 0

    assert fork_while_held(products._SCHEMA_LOCK, child, 30,
                           "the forked worker waited for a lock held by a thread of its parent") == 0


def test_bad_input_is_flagged_and_the_run_goes_on(archive_root, tmp_path):
    root = tmp_path / "root"
    folders = list_observations(archive_root)[:3]
    for f in folders:
        shutil.copytree(archive_root / f, root / f)
    (root / "proj" / "empty").mkdir(parents=True)
    (root / "proj" / "corrupt").mkdir(parents=True)
    (root / "proj" / "corrupt" / "image.fits").write_bytes(b"SIMPLE  =   this is not FITS" * 10)
    nowcs = root / "proj" / "nowcs"
    nowcs.mkdir()
    from astropy.io import fits

    fits.PrimaryHDU(np.ones((32, 32), dtype=np.float32)).writeto(nowcs / "img.fits")
    summary, xml = run_products(root, tmp_path / "work", parallel=1, progress=False)
    by = {i.id: i for i in summary.items}
    assert by["proj/empty"].status == "flagged" and "empty product folder" in by["proj/empty"].reason
    assert by["proj/corrupt"].status == "flagged" and "not a readable FITS file" in by["proj/corrupt"].reason
    assert by["proj/nowcs"].status == "flagged" and "no celestial WCS" in by["proj/nowcs"].reason
    assert all(by[f].status == "done" for f in folders if load_truth(archive_root)[f]["expect"] == "done")
    assert {o.folder for o in read_xml(xml)} == set(by)  # nothing is lost from the document


def test_cli_products_with_truth(archive_root, tmp_path):
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "pipeline", "products", "--root",
                        str(archive_root), "--work", str(tmp_path / "w"), "--truth", "--no-progress",
                        "--parallel", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "errors: 0" in r.stdout and "primaryBeam" in r.stdout
    assert Path(tmp_path / "w" / "products.xml").exists()


def test_fast_centre_is_astropys_centre(tmp_path):
    """The wcslib-only RA/Dec of an observation equals astropy's WCS.pixel_to_world bit for bit
    on every generated file with a celestial WCS (and both say None where there is none)."""
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS

    from appliance.pipeline.fitsimage import read_image

    generate(tmp_path / "a", observations=12, seed=5, size=64)
    checked = 0
    for path in sorted((tmp_path / "a").rglob("*.fits")):
        try:
            img = read_image(path, need_wcs=False)
        except BadInput:
            continue
        fast = img.centre_radec()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdr = fits.getheader(path)
            full = WCS(hdr)
        if not full.has_celestial:
            assert fast is None, path
            continue
        n = img.data.shape
        c = full.celestial.pixel_to_world((n[1] - 1) / 2, (n[0] - 1) / 2)
        assert fast == (float(c.ra.deg), float(c.dec.deg)), path
        checked += 1
    assert checked >= 20


def test_a_run_over_one_observation_keeps_the_others_in_products_xml(archive_root, tmp_path):
    """Re-running one observation (as the web page does) rewrites products.xml with every
    observation of the work area, not only the one that ran."""
    work = tmp_path / "work"
    _, xml = run_products(archive_root, work, parallel=1, progress=False)
    before = xml.read_bytes()
    n = len(read_xml(xml))
    one = list_observations(archive_root)[3]
    summary, xml = run_products(archive_root, work, folders=[one], parallel=1, progress=False,
                                resume=False)
    assert [st.id for st in summary.items] == [one] and one in summary.ran
    assert len(read_xml(xml)) == n and xml.read_bytes() == before
