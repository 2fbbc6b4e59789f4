"""The ``match`` stage against the project's real archive server (HTTPS, test CA, bearer token).

``pipeline generate --ingest`` uploads a generated archive into the server; a few files are then
written to tape and dropped from the disk cache, so ``pipeline match`` must stage them through the
Tape REST API; every fetched file is byte-identical and its adler32 is the catalog's. Every
execution is a run with a run record (``appliance runs show``) that ``appliance replay`` replays.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from astropy.io import fits

from tests.appliance.staging.archive_server import archive  # noqa: F401
from tests.appliance.transfer.fixtures import pki  # noqa: F401

PREFIX = "alma-m"
SCOPES = "storage.read:/ storage.create:/ storage.modify:/ storage.stage:/"


def _appliance(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return _appliance(env, "pipeline", *args, "--no-progress")


def _record(env: dict, run_id: str) -> dict:
    p = _appliance(env, "runs", "show", run_id, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _all_fits(src: Path) -> list[str]:
    """Every file ingest uploaded (``.fits`` and ``.FITS``)."""
    return sorted(f.relative_to(src).as_posix() for f in src.rglob("*") if f.suffix.lower() == ".fits")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def served(archive, pki, tmp_path_factory):  # noqa: F811
    """A 10-observation archive ingested through the CLI; three of its files only on tape."""
    src = tmp_path_factory.mktemp("alma-src")
    # run records go to this module's home, never the user's
    env = {**os.environ, "BEARER_TOKEN": archive.mint(SCOPES), "X509_CERT_DIR": str(pki.cert_dir),
           "APPLIANCE_HOME": str(tmp_path_factory.mktemp("home"))}
    url = archive.running.url
    p = _cli(env, "generate", "--out", str(src), "--observations", "10", "--seed", "5", "--size", "48",
             "--ingest", url, "--prefix", PREFIX)
    assert p.returncode == 0, p.stderr
    files = sorted(f.relative_to(src).as_posix() for f in src.rglob("*.fits"))
    assert files
    taped = files[::4][:3]
    for rel in taped:
        archive.on_tape(f"/{PREFIX}/{rel}")
    return src, env, url, files, taped


def _adler(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()) & 0xffffffff:08x}"


def _folders_where(src: Path, pred) -> set[str]:
    out = set()
    for f in src.rglob("*.fits"):
        if pred(fits.getheader(f)):
            out.add(f.parent.relative_to(src).as_posix())
    return out


def test_match_everything_stages_and_verifies(served, tmp_path):
    src, env, url, files, taped = served
    got, work = tmp_path / "got", tmp_path / "work"
    p = _cli(env, "match", "--url", url, "--prefix", PREFIX, "--root", str(got), "--work", str(work), "--json")
    assert p.returncode == 0, p.stderr + p.stdout[-3000:]
    summary = json.loads(p.stdout)
    folders = {Path(f).parent.as_posix() for f in files}
    assert summary["done"] == len(folders) and summary["failed"] == 0
    for rel in files:
        assert (got / rel).read_bytes() == (src / rel).read_bytes(), rel
    transfers = json.loads((work / "match-transfers.json").read_text())
    assert all(f["verified"] and f["checksum_type"] == "adler32" for f in transfers["files"])
    assert any(f"staged {len(taped)} file(s)" in n for n in transfers["notes"]), transfers["notes"]
    state = json.loads(next((work / "state" / "match").glob("*.json")).read_text())
    name, check = next(iter(state["result"]["files"].items()))
    assert check == f"adler32:{_adler(got / state['id'] / name)}"
    # the fetched tree is what `products` expects
    from appliance.pipeline.stages import list_observations

    assert list_observations(got) == list_observations(src)
    # the execution is a run: every fetched file an input by URL with the sha256 of its bytes,
    # every fetched file and the verdicts its outputs
    run_id = summary["run_id"]
    assert run_id and f"run record {run_id}" in p.stderr, p.stderr
    rec = _record(env, run_id)
    assert rec["state"] == "succeeded" and rec["exit_code"] == 0 and rec["runtime"]["name"] == "host-process"
    params = rec["recipe"]["definition"]["params"]
    assert params["url"] == url and params["prefix"] == PREFIX and params["folders"] == sorted(folders)
    assert params["selection"] == {"cone": None, "project": None, "band": None, "start": None, "end": None}
    every = _all_fits(src)
    assert set(files) < set(every)
    inputs = {i["name"]: i for i in rec["inputs"]}
    assert set(inputs) == {f"archive/{PREFIX}/{rel}" for rel in every}
    for rel in every:
        entry = inputs[f"archive/{PREFIX}/{rel}"]
        assert entry["uri"] == f"{url}/{PREFIX}/{rel}" and entry["sha256"] == _sha256(src / rel), rel
    outputs = {o["name"]: o for o in rec["outputs"]}
    assert set(outputs) == {f"root/{rel}" for rel in every} | {"verdicts.json"}
    assert all(outputs[f"root/{rel}"]["sha256"] == _sha256(src / rel) for rel in every)
    assert {o["compare"] for o in rec["outputs"]} == {"sha256"}
    # `appliance replay RUN` fetches the same observations again and compares by policy
    rp = _appliance(env, "replay", run_id, "--json")
    assert rp.returncode == 0, rp.stderr + rp.stdout[-2000:]
    assert json.loads(rp.stdout)["status"] == "identical"
    # resume: a second run fetches nothing
    again = _cli(env, "match", "--url", url, "--prefix", PREFIX, "--root", str(got), "--work", str(work), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["processed"] == 0


def test_match_selections(served, tmp_path):
    src, env, url, files, _ = served

    def run(*sel: str) -> set[str]:
        work = tmp_path / ("w" + str(abs(hash(sel))))
        p = _cli(env, "match", "--url", url, "--prefix", PREFIX, "--root", str(tmp_path / "g"),
                 "--work", str(work), "--json", *sel)
        assert p.returncode == 0, p.stderr
        return {i["id"] for i in json.loads(p.stdout)["items"]}

    truth = json.loads((src / "truth.json").read_text())["observations"]
    t0 = truth[0]
    assert run("--band", str(t0["band"])) == {t["folder"] for t in truth if t["band"] == t0["band"]}
    want = _folders_where(src, lambda h: h.get("PROJECT") == t0["project"])
    got = run("--project", t0["project"])
    assert want <= got <= {t["folder"] for t in truth if t["project"] == t0["project"]} and want
    assert run("--project", "1999.1.00000.X") == set()
    assert run("--cone", f"{t0['ra']},{t0['dec']},0.01") == {t0["folder"]}
    dated = [t for t in truth if t["date"] < "2022-01-01"]
    want = _folders_where(src, lambda h: "DATE-OBS" in h and h["DATE-OBS"] < "2022-01-01")
    got = run("--end", "2022-01-01")
    assert want <= got <= {t["folder"] for t in dated} and want


def test_match_bad_cone_and_no_url_are_usage_errors(served, tmp_path):
    _, env, url, _, _ = served
    p = _cli(env, "match", "--url", url, "--root", str(tmp_path / "g"), "--work", str(tmp_path / "w"),
             "--cone", "10,95,1")
    assert p.returncode == 2 and "--cone" in p.stderr and "Traceback" not in p.stderr
    p = _cli(env, "match", "--root", str(tmp_path / "g"), "--work", str(tmp_path / "w"))
    assert p.returncode == 2 and "--url" in p.stderr and "Traceback" not in p.stderr


def test_match_without_read_scope_is_refused(served, archive, tmp_path):  # noqa: F811
    _, env, url, _, _ = served
    env = {**env, "BEARER_TOKEN": archive.mint("storage.read:/elsewhere")}
    p = _cli(env, "match", "--url", url, "--prefix", PREFIX, "--root", str(tmp_path / "g"),
             "--work", str(tmp_path / "w"))
    assert p.returncode == 8, (p.returncode, p.stderr)
    assert "catalog search answered 403" in p.stderr and "Traceback" not in p.stderr


def test_match_a_file_damaged_in_the_archive_fails_its_observation_only(served, archive, tmp_path):  # noqa: F811
    """Runs last (it damages the served archive): bytes on the server's disk no longer match the
    catalog's adler32, so that copy fails and names the file (exit 4, a checksum; the run record
    says so); the other observations are done. A replay of a run made before the damage fetches
    the damaged file again and does not reproduce (exit 6)."""
    src, env, url, files, taped = served
    victim = next(f for f in files if f not in taped)
    before = _cli(env, "match", "--url", url, "--prefix", PREFIX, "--root", str(tmp_path / "before"),
                  "--work", str(tmp_path / "wb"), "--json")
    assert before.returncode == 0, before.stderr
    before_id = json.loads(before.stdout)["run_id"]
    disk = archive.engine.disk_path(archive.engine.stat(f"/{PREFIX}/{victim}").file_id)
    data = bytearray(disk.read_bytes())
    data[-10:] = b"0123456789"
    disk.write_bytes(bytes(data))
    got, work = tmp_path / "got", tmp_path / "work"
    p = _cli(env, "match", "--url", url, "--prefix", PREFIX, "--root", str(got), "--work", str(work), "--json")
    assert p.returncode == 4, (p.returncode, p.stderr)
    summary = json.loads(p.stdout)
    by = {i["id"]: i for i in summary["items"]}
    folder = Path(victim).parent.as_posix()
    assert by[folder]["status"] == "failed" and Path(victim).name in by[folder]["reason"]
    assert "adler32" in by[folder]["reason"].lower() or "checksum" in by[folder]["reason"].lower()
    assert all(i["status"] == "done" for k, i in by.items() if k != folder)
    assert not (got / victim).exists()
    rec = _record(env, summary["run_id"])
    assert rec["state"] == "failed" and rec["exit_code"] == 4, (rec["state"], rec["exit_code"])
    assert folder in rec["error"] and Path(victim).name in rec["error"]
    names = {i["name"] for i in rec["inputs"]} | {o["name"] for o in rec["outputs"]}
    assert not any(n.endswith(victim) for n in names), "a file that failed its checksum is neither input nor output"
    assert {i["name"] for i in rec["inputs"]} == {f"archive/{PREFIX}/{rel}" for rel in _all_fits(src)
                                                if rel != victim}
    # a failed run is not replayed (exit 4, one line)
    rp = _appliance(env, "replay", summary["run_id"])
    assert rp.returncode == 4 and "did not succeed" in rp.stderr and "Traceback" not in rp.stderr, rp.stderr
    # the run made before the damage: its replay fetches the damaged file, which fails, so it differs
    rp = _appliance(env, "replay", before_id, "--json")
    assert rp.returncode == 6, (rp.returncode, rp.stderr)
    verdict = json.loads(rp.stdout)
    assert verdict["status"] != "identical"
    assert f"root/{victim}" in rp.stdout and "verdicts.json" in rp.stdout


def test_match_a_transfer_failure_besides_a_checksum_exits_9(served, archive, tmp_path):  # noqa: F811
    """After the damage above: a second file gone from the server's disk (the catalog still lists
    it; the server answers 423, not on disk) fails on the transfer, not on a checksum, so the run
    exits 9 and its record says 9."""
    src, env, url, files, taped = served
    damaged = next(f for f in files if f not in taped)
    gone = next(f for f in files if f not in taped and Path(f).parent != Path(damaged).parent)
    archive.engine.disk_path(archive.engine.stat(f"/{PREFIX}/{gone}").file_id).unlink()
    got, work = tmp_path / "got", tmp_path / "work"
    p = _cli(env, "match", "--url", url, "--prefix", PREFIX, "--root", str(got), "--work", str(work), "--json")
    assert p.returncode == 9, (p.returncode, p.stderr)
    summary = json.loads(p.stdout)
    by = {i["id"]: i for i in summary["items"]}
    assert by[Path(damaged).parent.as_posix()]["result"]["exit_code"] == 4
    assert by[Path(gone).parent.as_posix()]["status"] == "failed"
    lost = by[Path(gone).parent.as_posix()]
    assert lost["result"]["exit_code"] == 9 and Path(gone).name in lost["reason"], lost
    assert "checksum mismatch" not in lost["reason"], lost
    rec = _record(env, summary["run_id"])
    assert rec["state"] == "failed" and rec["exit_code"] == 9
