"""The numpy-only FITS reading path of ``fitsimage`` against astropy: the same header values, data
and WCS on the generated archive, and the same clear reason for every file it declines."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from appliance.pipeline import classify
from appliance.pipeline import fitsimage as fi
from appliance.pipeline.errors import BadInput
from appliance.pipeline.synth import generate, primary_beam

META_KEYS = ("PROJECT", "OBS_ID", "OBSID", "OBJECT", "DATE-OBS", "BMAJ", "BMIN", "CDELT2", "RADESYS",
             "CTYPE1", "CRVAL1", "NAXIS3", "BUNIT", "NOSUCHKW")


def _astropy(path: Path) -> tuple[np.ndarray, fits.Header]:
    """The image as astropy reads it: first HDU with 2-D or more data, float64, degenerate axes off."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path, memmap=False) as hdul:
            hdu = next(h for h in hdul if h.data is not None and h.data.ndim >= 2)
            data, header = np.asarray(hdu.data, dtype=np.float64), hdu.header.copy()
    while data.ndim > 2:
        data = data[0]
    return data, header


def _reason(fn, path: Path) -> str:
    with pytest.raises(BadInput) as e:
        fn(path)
    return str(e.value)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("fitsread")
    generate(root, observations=15, seed=4, size=48)
    return sorted(root.rglob("*.fits"))


def test_plain_reader_gives_astropys_header_data_and_wcs(archive):
    four_d = 0
    for path in archive:
        plain = fi._read_plain(path)
        assert plain is not None, f"{path}: the generated files are all plain"
        raw, data = plain
        ref, header = _astropy(path)
        assert raw == fi._primary_header_bytes(path)
        assert data.dtype == np.float64 and data.shape == ref.shape
        assert np.array_equal(data, ref, equal_nan=True), path
        assert np.isnan(data).any() == np.isnan(ref).any()
        four_d += header["NAXIS"] == 4
        im = fi.read_image(path)
        assert np.array_equal(im.data, ref, equal_nan=True) and im.data.flags.c_contiguous
        assert np.array_equal(fi.read_data(path), ref, equal_nan=True)
        for k in META_KEYS:  # straight from the cards, before the header is parsed ...
            assert im.get(k) == header.get(k) and type(im.get(k)) is type(header.get(k)), (path, k)
        assert im._header is fi._UNSET  # ... which it was not
        for k in header:  # ... and every value of the parsed header
            if k not in ("COMMENT", "HISTORY", ""):
                assert im.header[k] == header[k], (path, k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = WCS(header).celestial
        assert im.wcs.to_header() == want.to_header(), path
        n = im.data.shape
        c = want.pixel_to_world((n[1] - 1) / 2, (n[0] - 1) / 2)
        assert im.centre_radec() == (float(c.ra.deg), float(c.dec.deg)), path
    assert four_d and four_d < len(archive)  # both 2-D and 4-D files were read


def _write(path: Path, hdus: list) -> Path:
    fits.HDUList(hdus).writeto(path)
    return path


def _celestial(h: fits.Header | None = None) -> fits.Header:
    h = h if h is not None else fits.Header()
    h["CTYPE1"], h["CTYPE2"], h["CRVAL1"], h["CRVAL2"] = "RA---SIN", "DEC--SIN", 10.0, -30.0
    h["CDELT1"], h["CDELT2"], h["CRPIX1"], h["CRPIX2"] = -1e-4, 1e-4, 16.5, 16.5
    return h


def test_files_it_declines_are_read_by_astropy_as_before(tmp_path):
    rng = np.random.default_rng(3)
    scaled = fits.PrimaryHDU(rng.integers(-100, 100, (32, 32)).astype(np.int16), header=_celestial())
    scaled.header["BSCALE"], scaled.header["BZERO"], scaled.header["BLANK"] = 0.5, 3.0, -100
    ints = fits.PrimaryHDU(rng.integers(0, 9, (32, 32)).astype(np.int32), header=_celestial())
    ext = [fits.PrimaryHDU(), fits.ImageHDU(rng.normal(size=(32, 32)).astype(np.float32), header=_celestial())]
    lower = fits.PrimaryHDU(rng.normal(size=(32, 32)).astype(np.float32), header=_celestial())
    files = {"scaled": _write(tmp_path / "scaled.fits", [scaled]),
             "int32": _write(tmp_path / "int32.fits", [ints]),
             "extension": _write(tmp_path / "ext.fits", ext)}
    b = bytearray(_write(tmp_path / "lower.fits", [lower]).read_bytes())
    i = bytes(b).index(b"CDELT1  ")
    b[i:i + 8] = b"cdelt1  "  # a lower-case keyword: astropy's keywords are case-blind
    (tmp_path / "lower.fits").write_bytes(bytes(b))
    for name, path in files.items():
        assert fi._read_plain(path) is None, name
        ref, header = _astropy(path)
        im = fi.read_image(path)
        assert np.array_equal(im.data, ref, equal_nan=True), name
        assert im.wcs is not None and im.get("CRVAL1") == header["CRVAL1"] == 10.0
    assert np.isnan(fi.read_image(files["scaled"]).data).any()  # BLANK -> NaN, as astropy scales it
    assert fi._read_plain(tmp_path / "lower.fits") is not None  # plain data, a lower-case card
    im, ref = fi.read_image(tmp_path / "lower.fits"), _astropy(tmp_path / "lower.fits")[1]
    assert im.get("CDELT1") == ref["CDELT1"] == -1e-4 and im.get("cdelt1") == -1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's note on the lower-case card
        assert im.wcs.to_header() == WCS(ref).celestial.to_header()


def test_bad_files_give_the_same_reason_as_astropys_path(tmp_path):
    good = _write(tmp_path / "good.fits", [fits.PrimaryHDU(np.ones((32, 32), np.float32), header=_celestial())])
    data = good.read_bytes()
    cases = {
        "corrupt.fits": b"SIMPLE  =   this is not FITS" * 10,
        "empty.fits": b"",
        "header-cut.fits": data[:100],
        "no-data.fits": data[:2880],
        "data-cut.fits": data[:2880 + 1000],
        "no-end.fits": data[:2880].replace(b"END" + b" " * 77, b" " * 80),
    }
    nowcs = _write(tmp_path / "nowcs.fits", [fits.PrimaryHDU(np.ones((32, 32), dtype=np.float32))])
    cube = _write(tmp_path / "cube.fits", [fits.PrimaryHDU(np.ones((3, 32, 32), np.float32), header=_celestial())])
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        path = tmp_path / name
        assert fi._read_plain(path) is None, name
        got = _reason(fi.read_image, path)
        assert got == _reason(fi._read_astropy, path), name  # the reason astropy's path gives
        assert got.startswith(f"{path}: not a readable FITS file ("), got
    assert fi._read_plain(nowcs) is not None
    assert _reason(fi.read_image, nowcs) == f"{nowcs}: no celestial WCS in the header (CTYPE1/CTYPE2 missing or invalid)"
    assert fi.read_image(nowcs, need_wcs=False).wcs is None
    assert fi._read_plain(cube) is None
    assert _reason(fi.read_image, cube) == f"{cube}: cube with 3 planes, the pipeline needs one plane"
    assert np.array_equal(fi.read_image(tmp_path / "good.fits").data, np.ones((32, 32)))


def test_keyword_values_from_the_cards_are_astropys(tmp_path):
    h = _celestial()
    h["OBJECT"] = "it''s ok  "
    h["PROJECT"] = "2023.1.00001.S"
    h["DATE-OBS"] = "2021-03-04T12:00:00"
    h["OBS_ID"] = "x" * 100  # a long string: CONTINUE cards
    h["TELESCOP"] = 12
    h.append(("TELESCOP", "second"))  # a duplicate: the first counts
    h.append(fits.Card.fromstring("INSTRUME="))  # a keyword without a value
    h["SIMPLEFL"] = True
    rvkc = _celestial()
    rvkc["OBJECT"] = "AXIS.1: 2"  # a record-valued keyword card (OBJECT.AXIS.1 = 2.0)
    rvkc["DATE-OBS"] = "2021"
    keys = ("OBJECT", "PROJECT", "DATE-OBS", "OBS_ID", "TELESCOP", "INSTRUME", "SIMPLEFL", "CRVAL2",
            "OBSID", "OBJECT.AXIS.1", "date-obs")
    for name, hdr in (("kw", h), ("rvkc", rvkc)):
        path = _write(tmp_path / f"{name}.fits", [fits.PrimaryHDU(np.zeros((16, 16), np.float32), header=hdr)])
        ref = _astropy(path)[1]
        for k in keys:
            im = fi.read_image(path)
            assert im._header is fi._UNSET  # plain: the value comes from the cards, or ...
            assert im.get(k) == ref.get(k) and type(im.get(k)) is type(ref.get(k)), (name, k)
        assert fi.read_image(path).get("OBS_ID") == ref.get("OBS_ID")
    assert fi.read_image(tmp_path / "kw.fits").get("OBS_ID") == "x" * 100
    im = fi.read_image(tmp_path / "kw.fits")
    assert im.get("OBS_ID") and im._header is not fi._UNSET  # ... from the parsed header (CONTINUE)


def _concentration_reference(data: np.ndarray, radius_frac: float = classify.RADIUS_FRAC) -> float:
    """The FFT concentration written out plainly (the classifier's first form)."""
    img = np.nan_to_num(np.asarray(data, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    power = np.abs(np.fft.fft2(img)) ** 2
    total = float(power.sum())
    if total <= 0:
        return 0.0
    ny, nx = img.shape
    r = np.hypot(*np.meshgrid(np.fft.fftfreq(nx) * nx, np.fft.fftfreq(ny) * ny))
    return float(power[r <= max(1.0, radius_frac * max(nx, ny))].sum() / total)


def test_concentration_is_the_plain_formula_bit_for_bit(archive):
    rng = np.random.default_rng(9)
    arrays = [fi.read_image(p).data for p in archive]
    odd = rng.normal(size=(40, 56))
    odd[3, 4], odd[5, 6], odd[7, 8] = np.nan, np.inf, -np.inf
    arrays += [primary_beam(64, 40), odd, np.zeros((8, 8)), rng.normal(size=(33, 33)).astype(np.float32)]
    for a in arrays:
        assert classify.concentration(a) == _concentration_reference(a)
    assert classify.concentration(np.zeros((8, 8))) == 0.0


def test_string_cards_read_without_astropys_card_give_its_value():
    """Every form of a string card: the raw reading equals astropy's Card value (or asks it)."""
    texts = ["'abc'", "'abc     '", "'  lead'", "''", "'a/b' / a comment", "'x'/c", "'it''s'",
             "'a'' b'", "'2021-03-04T12:00:00'", "'AXIS.1: 2'", "    'spaced'", "'abc' junk", "'~!@#$%^&*()'",
             "'unterminated", "12", "T", "1.5e3", "'tab\there'"]
    for t in texts:
        image = f"OBJECT  = {t}".ljust(80)[:80]
        raw = (image + "END".ljust(80)).encode("ascii")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                want = fits.Header.fromstring(raw.decode()).get("OBJECT")
            except Exception as e:  # noqa: BLE001 - then the raw reading must raise it too
                with pytest.raises(type(e)):
                    fi._raw_get(raw, "OBJECT")
                continue
        got = fi._raw_get(raw, "OBJECT")
        if got is fi._UNSET:
            assert fi._PLAIN_STRING.fullmatch(image.encode(), 8) is None, t  # asked the header
            continue
        assert got == want and type(got) is type(want), (t, got, want)
    assert fi._raw_get(("OBJECT  = 'abc  ' / c".ljust(80) + "END".ljust(80)).encode(), "OBJECT") == "abc"


def test_long_headers_and_large_images_are_read_in_pieces(tmp_path):
    """A header longer than the first read and data beyond it: the same header bytes and data."""
    rng = np.random.default_rng(5)
    h = _celestial()
    for i in range(400):  # 400 cards: 12 header blocks, past the first read of 8
        h.add_history(f"step {i}")
    h["OBJECT"] = "late card"
    big = rng.normal(size=(200, 180)).astype(np.float32)
    big[5, 7] = np.nan
    for name, data in (("longhdr.fits", big[:20, :30]), ("big.fits", big), ("f8.fits", big.astype(np.float64))):
        path = _write(tmp_path / name, [fits.PrimaryHDU(data, header=h)])
        raw, got = fi._read_plain(path)
        ref, header = _astropy(path)
        assert raw == fi._primary_header_bytes(path) and len(raw) > fi._FIRST_READ
        assert np.array_equal(got, ref, equal_nan=True) and got.shape == data.shape, name
        im = fi.read_image(path)
        assert im.get("OBJECT") == header["OBJECT"] == "late card" and im.centre_radec() is not None
    b = (tmp_path / "big.fits").read_bytes()
    (tmp_path / "cut.fits").write_bytes(b[:len(b) - 3000])  # data cut past the first read
    assert fi._read_plain(tmp_path / "cut.fits") is None
    assert _reason(fi.read_image, tmp_path / "cut.fits") == _reason(fi._read_astropy, tmp_path / "cut.fits")
