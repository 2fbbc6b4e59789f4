"""FITS header metadata on ingest, and the catalog search API over HTTPS."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from astropy.io import fits
from astropy.wcs import WCS

from archive.fitsmeta import extract
from tests.archive.conftest import tls_session


def write_fits(path, **cards):
    hdu = fits.PrimaryHDU(np.zeros((10, 10), dtype=np.float32))
    for k, v in cards.items():
        hdu.header[k.replace("_", "-") if k == "DATE_OBS" else k] = v
    hdu.writeto(path, overwrite=True)
    return path


def test_extract_keywords(tmp_path):
    p = write_fits(tmp_path / "a.fits", TELESCOP="LOFAR", INSTRUME="HBA", OBJECT="M51",
                   RA="13:29:52.7", DEC="+47:11:43", DATE_OBS="2024-03-01T12:00:00",
                   EXPTIME=3600.0, PROPOSID="LC9_001", OBS_ID="L123456", PRODTYPE="image")
    m = extract(p)
    assert (m.telescope, m.instrument, m.object, m.project, m.observation, m.product_type) == \
        ("LOFAR", "HBA", "M51", "LC9_001", "L123456", "image")
    assert m.ra == pytest.approx(202.4696, abs=1e-3) and m.dec == pytest.approx(47.1953, abs=1e-3)
    assert m.date_obs.startswith("2024-03-01T12:00:00") and m.exptime == 3600.0
    assert m.t_obs == pytest.approx(1709294400.0)


def test_extract_wcs_centre(tmp_path):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [5.5, 5.5]
    w.wcs.cdelt = [-0.01, 0.01]
    hdu = fits.PrimaryHDU(np.zeros((10, 10), dtype=np.float32), header=w.to_header())
    hdu.writeto(tmp_path / "w.fits")
    m = extract(tmp_path / "w.fits")
    assert m.ra == pytest.approx(150.0, abs=1e-6) and m.dec == pytest.approx(2.0, abs=1e-6)
    assert extract(tmp_path / "not-fits.txt") is None
    (tmp_path / "broken.fits").write_bytes(b"garbage")
    assert extract(tmp_path / "broken.fits") is None


def test_search_api(lta, pki, mint, tmp_path):
    s = tls_session(pki, mint())
    for i, (ra, dec, inst) in enumerate([(10.0, 20.0, "HBA"), (10.2, 20.1, "LBA"),
                                         (200.0, -30.0, "HBA")]):
        p = write_fits(tmp_path / f"s{i}.fits", TELESCOP="LOFAR", INSTRUME=inst, RA=ra, DEC=dec,
                       DATE_OBS=f"2024-0{i + 1}-15T00:00:00", PROPOSID="LC9_001",
                       OBS_ID=f"L{i}")
        assert s.put(f"{lta.url}/sky/s{i}.fits", data=p.read_bytes()).status_code == 201
    r = s.get(lta.url + "/api/catalog/search",
              params={"prefix": "/sky", "ra": 10.1, "dec": 20.0, "radius": 0.5})
    assert r.status_code == 200
    assert [i["path"] for i in r.json()["items"]] == ["/sky/s0.fits", "/sky/s1.fits"]
    r = s.get(lta.url + "/api/catalog/search", params={"prefix": "/sky", "instrument": "HBA",
                                                        "start": "2024-02-01", "limit": 1})
    items = r.json()["items"]
    assert [i["path"] for i in items] == ["/sky/s2.fits"]
    assert items[0]["metadata"]["observation"] == "L2"
    r = s.get(lta.url + "/api/catalog/search", params={"prefix": "/sky", "limit": 2})
    page = r.json()
    assert page["count"] == 2 and page["next"] == "/sky/s1.fits"
    r = s.get(lta.url + "/api/catalog/search", params={"prefix": "/sky", "after": page["next"]})
    assert [i["path"] for i in r.json()["items"]] == ["/sky/s2.fits"]
    assert s.get(lta.url + "/api/catalog/search", params={"ra": 1}).status_code == 400
    assert s.get(lta.url + "/api/catalog/search", params={"bogus": 1}).status_code == 400
    one = s.get(lta.url + "/api/catalog/files/sky/s0.fits").json()
    assert one["metadata"]["instrument"] == "HBA" and one["locality"] in ("DISK", "DISK_AND_TAPE")
    anon = requests.get(lta.url + "/api/catalog/search", verify=str(pki.ca_cert))
    assert anon.status_code == 401


def test_a_fits_file_moved_into_place_is_described(lta, pki, mint, tmp_path):
    """Clients upload to a temporary name and MOVE it to the final one (the transfer layer,
    rclone, davix): the file is searchable by its headers as after a direct PUT. A value with a
    space is sent the way requests sends it (``+``)."""
    s = tls_session(pki, mint())
    p = write_fits(tmp_path / "m.fits", TELESCOP="ALMA", INSTRUME="ALMA Band 3", RA=50.0, DEC=-5.0,
                   DATE_OBS="2024-05-01T00:00:00", PROPOSID="2024.1.00001.S", OBS_ID="uid://A1")
    assert s.put(f"{lta.url}/moved/.m.fits.part-1", data=p.read_bytes()).status_code == 201
    assert s.request("MOVE", f"{lta.url}/moved/.m.fits.part-1",
                     headers={"Destination": f"{lta.url}/moved/m.fits"}).status_code == 201
    r = s.get(lta.url + "/api/catalog/search", params={"prefix": "/moved", "instrument": "ALMA Band 3"})
    assert r.status_code == 200 and "+" in r.url
    items = r.json()["items"]
    assert [i["path"] for i in items] == ["/moved/m.fits"], r.json()
    assert items[0]["metadata"]["instrument"] == "ALMA Band 3"
    r = s.get(lta.url + "/api/catalog/search", params={"prefix": "/moved", "ra": 50, "dec": -5,
                                                        "radius": 0.1})
    assert [i["path"] for i in r.json()["items"]] == ["/moved/m.fits"]
