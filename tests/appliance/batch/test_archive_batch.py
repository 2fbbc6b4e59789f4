"""appliance batch over a catalog collection of the REAL archive server (archive.server over
HTTPS with the test CA and a WLCG token), with its tape simulator behind it.

Six observations of project X lie on three cartridges, interleaved: in name order (the order of
the batch items) every item is on another cartridge than the one before, so recalling them item
by item on the one drive would mount a cartridge per item (6 mounts). The archive is restarted
before the batch (no cartridge left in the drive by the migration) with nothing waiting for tape
(no migration mount during the batch), so every cartridge the batch needs must be mounted at
least once: a mount count equal to the number of cartridges means each
was mounted exactly once. What the test reads from the server: the stage POSTs in its access log,
the tape counters of /metrics, the stage requests in its catalog.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest

from appliance.cli import main as cli
from appliance.runs.record import RunStore
from tests.appliance.conftest import write_recipe
from tests.archive.conftest import ALL_SCOPES, mint, pki, server_config, tls_session, token_key  # noqa: F401

pytestmark = pytest.mark.docker

CARTRIDGES, PER_CARTRIDGE, SIZE = 3, 2, 15_000
CODE = """\
import hashlib
data = open("/input/obs.fits", "rb").read()
open("/output/digest.txt", "w").write(hashlib.sha256(data).hexdigest() + "\\n")
"""


class StagePosts(logging.Handler):
    """Every POST /api/v1/stage the server answered (the archive.access records)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.posts: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        a = getattr(record, "access", None)
        if a and a["method"] == "POST" and a["path"].rstrip("/").endswith("/api/v1/stage"):
            self.posts.append(a)


def metrics(srv, pki) -> dict[str, float]:  # noqa: F811
    text = tls_session(pki).get(srv.url + "/metrics", timeout=30).text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split()
            out[name] = float(value)
    return out


@pytest.fixture
def tape_archive(tmp_path: Path, pki, token_key):  # noqa: F811
    """The archive server with the observations on tape only, freshly restarted."""
    from archive.server import serve_in_thread

    root = tmp_path / "lta" / "root"
    root.parent.mkdir(parents=True)
    # one drive; a cartridge takes one migration batch (a second never fits: a fresh one is labelled)
    cfg = server_config(root, pki, token_key[1], tape={"cartridges": 1, "drives": 1,
                                                       "capacity_bytes": PER_CARTRIDGE * SIZE + 20_000})
    srv = serve_in_thread(cfg)
    data: dict[str, bytes] = {}
    try:
        a = srv.archive
        for c in range(CARTRIDGES):  # cartridge c gets obs-c, obs-(c+3): interleaved in name order
            batch = [f"/projects/X/obs-{c + k * CARTRIDGES}.fits" for k in range(PER_CARTRIDGE)]
            for path in batch:
                src = tmp_path / "ingest.bin"
                data[path] = _fits("X", SIZE)
                src.write_bytes(data[path])
                a.ingest_local(src, path, owner="alice")
            a.migrate_now()
            _wait(lambda b=batch: all(a.catalog.tape_replicas(a.stat(p).file_id) for p in b), "migration")
        (tmp_path / "ingest.bin").write_bytes(_fits("Y", SIZE))
        a.ingest_local(tmp_path / "ingest.bin", "/projects/Y/other.fits", owner="alice")  # not project X
        (tmp_path / "ingest.bin").write_bytes(_fits("X", SIZE))
        a.ingest_local(tmp_path / "ingest.bin", "/elsewhere/x-too.fits", owner="alice")  # X, elsewhere
        # these two go to tape now too: a migration left waiting would start (and mount a
        # cartridge) during the batch, 30 simulated seconds after the restart
        a.migrate_now()
        _wait(lambda: not a._migration_pending(), "migration of the other files")
        for path in data:
            assert a.evict_path(path), f"{path}: disk copy not dropped"
            assert a.locality(path) in ("TAPE", "NEARLINE")
        tapes = {p: a.catalog.tape_replicas(a.stat(p).file_id)[0].tape for p in data}
    finally:
        srv.stop()
    assert len(set(tapes.values())) == CARTRIDGES, tapes
    srv = serve_in_thread(cfg)  # restarted: no cartridge in the drive
    yield srv, data, tapes
    srv.stop()


def _fits(project: str, size: int) -> bytes:
    """A small FITS image of about ``size`` bytes of random data, of ``project`` (PROPOSID)."""
    import io

    import numpy as np
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.frombuffer(os.urandom(size - 2880), dtype=np.uint8).copy())
    hdu.header["PROPOSID"] = project
    hdu.header["TELESCOP"] = "LOFAR"
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def _wait(pred, what: str, timeout: float = 60.0) -> None:
    import time

    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Batch:
    """`appliance batch --archive-query` over project X, watching the server while it runs."""

    def __init__(self, srv, pki, mint, settings, image: str, tmp_path: Path, monkeypatch, capsys):  # noqa: F811
        monkeypatch.setenv("BEARER_TOKEN", mint(ALL_SCOPES))
        monkeypatch.setenv("X509_CERT_DIR", str(pki.cert_dir))
        monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "no-proxy"))
        self.srv, self.pki, self.capsys, self.home = srv, pki, capsys, settings.home
        self.davs = srv.url.replace("https://", "davs://")
        self.recipe = write_recipe(tmp_path / "rec", {
            "name": "obsdigest", "image": image,
            "inputs": [{"name": "obs.fits", "uri": "seed.fits"}],
            "command": ["python3", "/recipe/main.py"], "outputs": [{"path": "digest.txt"}],
        }, {"main.py": CODE, "seed.fits": "seed\n"})

    def __call__(self, *extra: str) -> tuple[int, dict, list[dict], dict[str, float]]:
        """(exit code, JSON summary, the stage POSTs, the change of each metric)."""
        posts = StagePosts()
        access = logging.getLogger("archive.access")
        old_level = access.level
        access.addHandler(posts)
        access.setLevel(logging.INFO)
        before = metrics(self.srv, self.pki)
        try:
            code = cli(["batch", str(self.recipe), "--archive-query", f"{self.davs}/projects/X/",
                        "--match", "*.fits", "--home", str(self.home), "--json", *extra])
        finally:
            access.removeHandler(posts)
            access.setLevel(old_level)
        out, err = self.capsys.readouterr()
        assert out, err
        after = metrics(self.srv, self.pki)
        delta = {k: after[k] - before.get(k, 0.0) for k in after}
        delta["lta_pins"] = after["lta_pins"]  # a gauge: its value, not its change
        return code, json.loads(out), posts.posts, delta


def test_batch_over_archive_collection_stages_in_tape_order_once(
        tape_archive, pki, mint, settings, scratch_image, tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: F811
    srv, data, tapes = tape_archive
    batch = Batch(srv, pki, mint, settings, scratch_image, tmp_path, monkeypatch, capsys)
    davs, n = batch.davs, CARTRIDGES * PER_CARTRIDGE
    code, first, stage_posts, delta = batch("--workers", "2")
    assert code == 0, first
    assert (first["done"], first["failed"], first["cache_hits"], first["staged"]) == (n, 0, 0, 1)
    assert sorted(i["uri"] for i in first["items"]) == sorted(davs + p for p in data)  # not project Y
    # one bulk stage request for the whole batch; the workers' fetches found the files online
    assert len(stage_posts) == 1 and stage_posts[0]["status"] in (200, 201), stage_posts
    mounts = delta["lta_tape_mounts_total"]
    assert mounts == CARTRIDGES, f"{mounts:g} mounts for {n} items on {CARTRIDGES} cartridges"
    assert delta["lta_tape_read_files_total"] == n
    assert delta["lta_pins"] == 0  # the stage request was released when the batch ended
    # each item its own run record, its output the digest of its own observation
    runs = RunStore(settings.home)
    ok = [r for r in runs.list() if r.state == "succeeded"]
    assert len(ok) == n and len({r.run_id for r in ok}) == n and len({r.cache_key for r in ok}) == n
    by_uri = {i["uri"]: i["run_id"] for i in first["items"]}
    for path, blob in data.items():
        rec = runs.load(by_uri[davs + path])
        [inp] = rec.inputs
        assert (inp.uri, inp.sha256) == (davs + path, hashlib.sha256(blob).hexdigest())
        [out] = rec.outputs
        assert out.sha256 == hashlib.sha256((hashlib.sha256(blob).hexdigest() + "\n").encode()).hexdigest()
    # the re-run: every item a cache hit, nothing staged, no tape touched, no new record
    code, again, stage_posts, delta = batch("--workers", "2")
    assert code == 0 and again["cache_hits"] == n and again["done"] == n
    assert len(stage_posts) <= 1  # asked again (the files are still on disk: nothing recalled)
    assert delta["lta_tape_mounts_total"] == 0 and delta["lta_tape_read_files_total"] == 0
    assert len([r for r in runs.list() if r.state == "succeeded"]) == n


@pytest.mark.slow
def test_without_the_bulk_stage_each_item_mounts_again(
        tape_archive, pki, mint, settings, scratch_image, tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: F811
    """The control: items fetched one by one (--no-stage, one worker) in name order alternate
    cartridges, so the one drive mounts more than once per cartridge."""
    srv, data, tapes = tape_archive
    batch = Batch(srv, pki, mint, settings, scratch_image, tmp_path, monkeypatch, capsys)
    n = CARTRIDGES * PER_CARTRIDGE
    code, first, stage_posts, delta = batch("--workers", "1", "--no-stage")
    assert code == 0 and first["done"] == n and first["staged"] == 0, first
    assert len(stage_posts) == n  # each item's fetch staged its own file
    assert delta["lta_tape_mounts_total"] > CARTRIDGES, delta["lta_tape_mounts_total"]


def test_a_catalog_query_selects_by_header(tape_archive, pki, mint, monkeypatch) -> None:  # noqa: F811
    """`--archive-query URL?project=X` asks the archive's catalog (the FITS headers it extracted
    at ingest), not the folder names: below / it finds project X's files wherever they lie, and
    not project Y's; a parameter the catalog does not know is one line with exit 2."""
    from appliance.batch.stage import archive_query
    from appliance.errors import ApplianceError

    srv, data, _ = tape_archive
    monkeypatch.setenv("BEARER_TOKEN", mint(ALL_SCOPES))
    monkeypatch.setenv("X509_CERT_DIR", str(pki.cert_dir))
    davs = srv.url.replace("https://", "davs://")
    found = archive_query(f"{davs}/?project=X")
    assert found == sorted([davs + p for p in data] + [davs + "/elsewhere/x-too.fits"])
    assert archive_query(f"{davs}/projects/?project=X") == sorted(davs + p for p in data)
    assert archive_query(f"{davs}/?project=Y") == [davs + "/projects/Y/other.fits"]
    assert archive_query(f"{davs}/?project=X", match="obs-1*") == [davs + "/projects/X/obs-1.fits"]
    with pytest.raises(ApplianceError) as err:
        archive_query(f"{davs}/?colour=blue")
    assert err.value.exit_code == 2 and "colour" in str(err.value) and "\n" not in str(err.value)
