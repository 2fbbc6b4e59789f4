"""Converter on the afw FITS layout (flags bits, radians, extra HDUs), plain tables and Felis validation."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from astropy.io import fits
from astropy.table import Table

from appliance.qserv.afw import ColumnInfo, read_afw_catalog, write_afw_catalog
from appliance.qserv.convert import TableInput, convert_tables
from appliance.qserv.errors import CatalogError, SchemaError
from appliance.qserv.felis_schema import load_schema, validate_felis


def _tiny_afw(path):
    cols = {
        "id": np.array([10, 11, 12], dtype=np.int64),
        "coord_ra": np.radians([359.5, 0.25, 180.0]),
        "coord_dec": np.radians([-30.0, 0.0, 89.99]),
        "flux": np.array([1.5, np.nan, np.inf]),
    }
    info = {
        "id": ColumnInfo(doc="unique id"),
        "coord_ra": ColumnInfo("rad", "position", "Angle"),
        "coord_dec": ColumnInfo("rad", "position", "Angle"),
        "flux": ColumnInfo("nJy", "a flux"),
    }
    flags = [
        ("flag_a", "first bit", np.array([True, False, False])),
        ("flag_b", "second bit", np.array([False, True, False])),
        ("flag_c", "", np.array([True, True, True])),
    ]
    write_afw_catalog(path, cols, info, flags)


def test_afw_layout_on_disk(tmp_path):
    path = tmp_path / "cat.fits"
    _tiny_afw(path)
    with fits.open(path) as h:
        assert len(h) == 3  # primary, catalog, an archive HDU to be ignored
        hdr = h[1].header
        assert hdr["TTYPE1"] == "flags" and hdr["TFORM1"] == "3X" and hdr["FLAGCOL"] == 1
        assert [hdr["TFLAG1"], hdr["TFLAG2"], hdr["TFLAG3"]] == ["flag_a", "flag_b", "flag_c"]
        assert hdr["TUNIT3"] == "rad" and hdr["TCCLS3"] == "Angle"
        assert hdr["AFW_TABLE_VERSION"] == 3
    cat = read_afw_catalog(path)
    assert list(cat.flags) == ["flag_a", "flag_b", "flag_c"]
    assert cat.flags["flag_b"].tolist() == [False, True, False]
    assert "flags" not in cat.columns and cat.flag_docs["flag_a"] == "first bit"


def test_convert_units_flags_nulls(tmp_path):
    _tiny_afw(tmp_path / "cat.fits")
    res = convert_tables("tiny", [TableInput("Object", [str(tmp_path / "cat.fits")])], tmp_path / "out")
    assert res.ok and res.tables[0].nan_to_null == {"flux": 2}
    t = pq.read_table(tmp_path / "out" / "Object.parquet").to_pydict()
    assert t["objectId"] == [10, 11, 12]
    np.testing.assert_allclose(t["coord_ra"], [359.5, 0.25, 180.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(t["coord_dec"], [-30.0, 0.0, 89.99], rtol=0, atol=1e-12)
    assert t["flux"] == [1.5, None, None]
    assert t["flag_a"] == [True, False, False] and t["flag_c"] == [True, True, True]
    schema = load_schema(tmp_path / "out" / "schema.yaml")
    obj = schema.table("Object")
    assert obj.is_director and (obj.ra, obj.dec, obj.primary_key) == ("coord_ra", "coord_dec", "objectId")
    units = {c.name: c.unit for c in obj.columns}
    assert units["coord_ra"] == "deg" and units["flux"] == "nJy"
    types = {c.name: c.mysql_type() for c in obj.columns}
    assert types["flag_b"] == "BOOLEAN" and types["objectId"] == "BIGINT"


def test_generated_field_converts(converted):
    schema = load_schema(converted / "schema.yaml")
    src = schema.table("Source")
    assert src.director == "Object" and src.director_key == "objectId"
    assert {c.name for c in schema.table("Object").columns} >= {"u_psfFlux", "z_psfFluxErr", "shape_xy", "r_psfFlux_flag", "detect_isPrimary"}
    band = next(c for c in src.columns if c.name == "band")
    assert band.mysql_type() == "CHAR(1)"


def test_plain_fits_with_mapping(tmp_path):
    Table({"ID": [1, 2], "RA": [10.0, 370.0], "DEC": [5.0, -5.0], "mag": [20.0, 21.0]}).write(tmp_path / "plain.fits")
    spec = TableInput("Obj", [str(tmp_path / "plain.fits")], "fits", {"ID": "objId", "RA": "coord_ra", "DEC": "coord_dec"}, "deg")
    convert_tables("plain", [spec], tmp_path / "out")
    t = pq.read_table(tmp_path / "out" / "Obj.parquet").to_pydict()
    assert t["objId"] == [1, 2] and t["coord_ra"] == [10.0, 10.0]


def test_bad_declination_is_rejected(tmp_path):
    Table({"id": [1, 2, 3, 4], "coord_ra": [1.0, 2.0, 3.0, 4.0],
           "coord_dec": [10.0, 95.0, -91.5, 0.0]}).write(tmp_path / "bad.fits")
    with pytest.raises(CatalogError) as err:
        convert_tables("bad", [TableInput("Obj", [str(tmp_path / "bad.fits")], "fits", angle_unit="deg")], tmp_path / "out")
    # the column, the count and the first offending row (1-based) with its value
    assert "column 'coord_dec': declination outside [-90, 90] deg: 2 row(s), the first is row 2" in str(err.value)
    assert "95.0" in str(err.value)


def test_felis_validation_catches_errors(converted, tmp_path):
    doc = yaml.safe_load((converted / "schema.yaml").read_text())
    validate_felis(doc)
    doc["tables"][0]["columns"][0]["datatype"] = "quadruple"
    with pytest.raises(SchemaError):
        validate_felis(doc)
    doc = yaml.safe_load((converted / "schema.yaml").read_text())
    doc["tables"][0]["columns"][1]["fits:tunit"] = "not-a-unit"
    with pytest.raises(SchemaError):
        validate_felis(doc)


def test_missing_positions_refused_with_the_rename_to_use(tmp_path, capsys):
    import json

    from appliance.cli import main

    Table({"id": [1, 2], "RA": [10.0, 20.0], "Decl": [5.0, -5.0]}).write(tmp_path / "p.fits")
    argv = ["qserv", "convert", "--director", f"Obj={tmp_path}/p.fits", "--format", "fits", "--angle-unit", "deg", "--out", str(tmp_path / "out")]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("error:") == 1  # one line (after the progress bar)
    assert "no coord_ra and no coord_dec" in err and "--rename RA=coord_ra --rename Decl=coord_dec" in err
    assert not (tmp_path / "out" / "Obj.parquet").exists()
    rc = main(argv + ["--rename", "RA=coord_ra", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 2 and doc["ok"] is False and doc["error"]["missing"] == ["coord_dec"]
    assert doc["error"]["suggest"] == ["--rename Decl=coord_dec"]
    assert main(argv + ["--rename", "RA=coord_ra", "--rename", "Decl=coord_dec"]) == 0


def test_ra_reduction_is_counted(tmp_path, capsys):
    import json

    from appliance.cli import main

    Table({"id": [1, 2, 3, 4], "coord_ra": [10.0, 370.0, -0.5, 359.0], "coord_dec": [5.0, -5.0, 0.0, 1.0]}).write(tmp_path / "r.fits")
    rc = main(["qserv", "convert", "--director", f"Obj={tmp_path}/r.fits", "--format", "fits", "--angle-unit", "deg", "--out", str(tmp_path / "out")])
    assert rc == 0 and "2 RA value(s) reduced into [0, 360)" in capsys.readouterr().out
    doc = json.loads((tmp_path / "out" / "convert.json").read_text())
    assert doc["tables"][0]["ra_reduced"] == 2
    t = pq.read_table(tmp_path / "out" / "Obj.parquet").to_pydict()
    assert t["coord_ra"] == [10.0, 10.0, 359.5, 359.0]
