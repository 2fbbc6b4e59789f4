"""The partitioner's buffer budget (issue #18: peak memory flat in the number of rows).

A small budget cuts pass 2 into many spill buckets, gathers each in several pieces and renders
pass 1 in small pieces: the chunk files must be byte for byte those of the default budget. A bad
budget is one line naming the option, exit 2, and nothing is written.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import appliance.qserv.partition as partition_mod
from appliance.cli import main
from appliance.qserv.chunker import Chunker
from appliance.qserv.errors import PartitionConfigError
from appliance.qserv.felis_schema import TableSchema
from appliance.qserv.partition import DEFAULT_BUFFER_MB, partition_table
from appliance.qserv.readers import InputSpec

GRID = (85, 12, 0.1)  # wide overlap: ~3.5 locations per row, many overlap files
SMALL_MB = 1 / 16  # the smallest budget: 64 KiB


def _write_csv(path: Path, n: int, seed: int, hot: int = 0) -> None:
    """``n`` rows uniform on the sky, the last ``hot`` of them in one 0.3 x 0.3 deg patch (a skewed chunk)."""
    rng = np.random.default_rng(seed)
    ra = np.concatenate([rng.uniform(0, 360, n - hot), rng.uniform(100.1, 100.4, hot)])
    dec = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, n - hot))), rng.uniform(10.1, 10.4, hot)])
    order = rng.permutation(n)  # the hot rows spread over the input, as in a real catalog
    ra, dec = ra[order], dec[order]
    mag = rng.uniform(15, 25, n).round(3)
    path.write_text("id,ra,dec,mag\n" + "".join(f"{100 + i},{r!r},{d!r},{m!r}\n" for i, (r, d, m) in enumerate(zip(ra.tolist(), dec.tolist(), mag.tolist(), strict=True))))


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.glob("chunk_*.txt")}


def _index(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (directory / partition_mod.INDEX_DIR).glob("*.npy")}


@pytest.mark.parametrize("workers", [1, 2])
def test_small_budget_writes_the_same_bytes(tmp_path, monkeypatch, workers):
    _write_csv(tmp_path / "t.csv", 20_000, seed=21, hot=6_000)
    spec = InputSpec((str(tmp_path / "t.csv"),), "csv")
    table = TableSchema("T", [], "id", ra="ra", dec="dec")
    ref = partition_table(spec, table, tmp_path / "default", Chunker(*GRID), workers=workers)

    seen = {"buckets": 0, "largest": 0}  # what pass 2 was given: a spy, the real function runs
    real = partition_mod._write_bucket

    def spy(args):
        work, _, bucket, n_workers, budget = args
        assert budget == int(SMALL_MB * (1 << 20))
        size = sum((Path(work) / f"spill_{w}_{bucket}.bin").stat().st_size
                   for w in range(n_workers) if (Path(work) / f"spill_{w}_{bucket}.bin").exists())
        seen["buckets"] += 1
        seen["largest"] = max(seen["largest"], size)
        return real(args)

    if workers == 1:  # (a spawned pool re-imports the module: no spy there)
        monkeypatch.setattr(partition_mod, "_write_bucket", spy)
    small = partition_table(spec, table, tmp_path / "small", Chunker(*GRID), workers=workers, buffer_mb=SMALL_MB)

    a, b = _files(tmp_path / "default" / "T"), _files(tmp_path / "small" / "T")
    assert len(a) > 500 and sorted(a) == sorted(b)
    assert [n for n in a if a[n] != b[n]] == []  # byte-identical, row order included
    assert _index(tmp_path / "default" / "T") == _index(tmp_path / "small" / "T")
    assert small.chunks == ref.chunks and small.overlap_rows == ref.overlap_rows > 20_000 and small.files == ref.files
    if workers == 1:
        # the flush paths ran: many buckets, and the hot chunk's bucket larger than one gather
        # piece and than what is read at once (so it was memory-mapped)
        assert seen["buckets"] > 16
        budget = int(SMALL_MB * (1 << 20))
        assert seen["largest"] > max(partition_mod._gather_limit(budget), partition_mod._read_limit(budget))
    # and pass 1 rendered in many pieces (locations per batch >> one render piece)
    assert partition_mod._render_piece(int(SMALL_MB * (1 << 20))) < small.rows + small.overlap_rows


def test_default_budget_is_the_historical_buffers():
    b = int(DEFAULT_BUFFER_MB * (1 << 20))
    assert b == partition_mod.SPILL_BUCKET_BYTES == 48 << 20
    assert partition_mod._gather_limit(b) == 64 << 20  # the fixed sizes before the budget existed
    assert partition_mod._read_limit(b) == 160 << 20
    assert partition_mod._render_piece(b) == 1 << 18


@pytest.mark.parametrize("bad", [0, -1, 0.01, 1e6, math.nan, math.inf, "lots", None, True])
def test_bad_budget_refused_in_one_line(tmp_path, bad):
    _write_csv(tmp_path / "t.csv", 100, seed=22)
    spec = InputSpec((str(tmp_path / "t.csv"),), "csv")
    table = TableSchema("T", [], "id", ra="ra", dec="dec")
    with pytest.raises(PartitionConfigError) as err:
        partition_table(spec, table, tmp_path / "p", Chunker(*GRID), buffer_mb=bad)
    text = str(err.value)
    assert err.value.exit_code == 2 and "\n" not in text
    assert "buffer_mb" in text and "from 0.0625 to 16384" in text and repr(bad) in text
    assert not (tmp_path / "p").exists() or not list((tmp_path / "p").iterdir())  # nothing written


def test_bad_budget_on_the_command_line(tmp_path, capsys):
    """`appliance qserv partition --buffer-mb -5`: one stderr line, exit 2, no traceback, nothing written;
    a small valid budget through the CLI writes what the default writes."""
    _write_csv(tmp_path / "t.csv", 2000, seed=23)
    base = ["qserv", "partition", "--input", str(tmp_path / "t.csv"), "--pos", "ra,dec", "--id", "id"]
    rc = main([*base, "--out", str(tmp_path / "bad"), "--buffer-mb", "-5"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("appliance: error: buffer_mb (--buffer-mb):") and "-5.0" in err
    assert "Traceback" not in err
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").rglob("chunk_*"))
    assert main([*base, "--out", str(tmp_path / "small"), "--buffer-mb", "0.0625"]) == 0
    assert main([*base, "--out", str(tmp_path / "default")]) == 0
    small = {p.relative_to(tmp_path / "small"): p.read_bytes() for p in (tmp_path / "small").rglob("chunk_*")}
    default = {p.relative_to(tmp_path / "default"): p.read_bytes() for p in (tmp_path / "default").rglob("chunk_*")}
    assert small and small == default
