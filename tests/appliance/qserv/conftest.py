"""Session fixtures: a private MariaDB server and one generated, converted and partitioned field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.qserv import localdb
from appliance.qserv.chunker import Chunker
from appliance.qserv.convert import TableInput, convert_tables
from appliance.qserv.felis_schema import load_schema
from appliance.qserv.generate import FieldSpec, write_field
from appliance.qserv.partition import partition_table
from tests.prereq import require

SMALL_FIELD = FieldSpec(n_members=250, n_background=2500, n_stars=120, visits_per_band=1, radius=0.3)


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    """A real mariadbd on 127.0.0.1 (free port) + unix socket in a temp dir; stopped by PID."""
    require(localdb.available(), "mariadbd / mariadb-install-db not installed (apt: mariadb-server)")
    server = localdb.LocalMariaDB(tmp_path_factory.mktemp("mariadb"))
    cfg = server.start()
    yield cfg
    server.stop()


@pytest.fixture(scope="session")
def field_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("field")
    write_field(SMALL_FIELD, d)
    return d


@pytest.fixture(scope="session")
def converted(field_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted")
    sources = sorted(str(p) for p in field_dir.glob("Source_*.fits"))
    convert_tables(
        "cluster",
        [TableInput("Object", [str(field_dir / "Object.fits")]), TableInput("Source", sources, director="Object", director_key="objectId")],
        out,
    )
    return out


@pytest.fixture(scope="session")
def partitioned(converted, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("partitioned")
    schema = load_schema(converted / "schema.yaml")
    chunker = Chunker()
    for t in ("Object", "Source"):
        partition_table(converted / f"{t}.parquet", schema.table(t), out, chunker)
    return out


@pytest.fixture()
def partition_copy(partitioned, tmp_path) -> Path:
    """A private copy of the partitioned field that a test may damage."""
    dst = tmp_path / "partitioned"
    shutil.copytree(partitioned, dst)
    return dst
