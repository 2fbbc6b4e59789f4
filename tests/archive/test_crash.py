"""SIGKILL of the server during 200 concurrent ingests (and migrations), then a restart:
nothing acknowledged is lost, nothing is corrupt, nothing is orphaned."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import requests
import yaml

SECRET = "crash-test-secret-" * 4


def start(cfg_path):
    p = subprocess.Popen([sys.executable, "-m", "archive.cli", "--json", "serve", "--config",
                          str(cfg_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=os.getcwd())
    line = p.stdout.readline()
    try:
        return p, json.loads(line)["url"]
    except (ValueError, KeyError):
        p.kill()  # never leave a server behind
        p.wait(10)
        raise AssertionError(f"server did not start: {line!r} {p.stderr.read()}") from None


def test_sigkill_during_ingest(tmp_path):
    root = tmp_path / "lta"
    cfg = {"root": str(root), "server": {"port": 0},
           "clock": {"speed": 600}, "migration": {"max_age_seconds": 30, "batch_files": 20},
           "auth": {"token_keys": [{"issuer": "crash", "algorithm": "HS256", "secret": SECRET}]}}
    cfg_path = tmp_path / "lta.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    tok = jwt.encode({"iss": "crash", "sub": "t", "exp": int(time.time()) + 3600,
                      "scope": "storage.create:/ storage.read:/ storage.modify:/"}, SECRET,
                     algorithm="HS256")
    h = {"Authorization": f"Bearer {tok}"}
    proc, url = start(cfg_path)
    try:
        _crash_and_check(proc, url, cfg_path, h)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _crash_and_check(proc, url, cfg_path, h) -> None:
    acked: dict[str, str] = {}
    lock = threading.Lock()
    rng = __import__("random").Random(7)
    sizes = [rng.randint(10_000, 1_500_000) for _ in range(200)]

    def upload(i: int) -> None:
        data = os.urandom(sizes[i])
        try:
            r = requests.put(f"{url}/crash/f{i:03d}", data=data, headers=h, timeout=30)
        except requests.RequestException:
            return
        if r.status_code == 201:
            with lock:
                acked[f"/crash/f{i:03d}"] = hashlib.sha256(data).hexdigest()

    killer_done = threading.Event()

    def killer() -> None:
        while len(acked) < 80 and proc.poll() is None:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: other uploads are in flight
        killer_done.set()

    threading.Thread(target=killer, daemon=True).start()
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(upload, range(200)))
    killer_done.wait(30)
    proc.wait(10)
    assert 80 <= len(acked) < 200, len(acked)

    # restart: recovery runs; then stop cleanly and check everything from the inside
    proc2, url2 = start(cfg_path)
    try:
        for path in list(acked)[:5]:
            assert requests.get(url2 + path, headers=h, timeout=30).status_code == 200
    finally:
        proc2.send_signal(signal.SIGTERM)
        try:
            assert proc2.wait(30) == 0
        finally:
            if proc2.poll() is None:
                proc2.kill()

    from archive.config import load_config
    from archive.engine import Archive

    a = Archive(load_config(cfg_path, env={}))
    try:
        entries = {f.path: f for f in a.catalog.iter_files()}
        for path, sha in acked.items():  # nothing acknowledged was lost
            assert path in entries and entries[path].sha256 == sha
        disk_ids = {r.file_id for r in a.catalog.disk_replicas()}
        for f in entries.values():  # nothing corrupt: every disk copy matches its checksum
            assert f.file_id in disk_ids
            assert hashlib.sha256(a.disk_path(f.file_id).read_bytes()).hexdigest() == f.sha256
        on_disk = {p.name for d in a.disk_dir.iterdir() if d.name != ".tmp"
                   for p in d.iterdir()}
        assert on_disk == disk_ids  # no orphan files, no dangling rows
        assert not list(a.tmp_dir.iterdir())
        for t in a.library.tapes.values():  # tapes: every complete record is readable
            for _fseq, _off, header, _size in a.library.scan(t.tape):
                assert header["kind"] in ("file", "mkdir", "delete", "move", "rmdir")
        for fid in disk_ids:
            for rep in a.catalog.tape_replicas(fid):
                with open(os.devnull, "wb") as sink:
                    a.library.read_into(rep.tape, rep.offset, sink, entries_by_id(entries)[fid])
    finally:
        a.close()


def entries_by_id(entries):
    return {f.file_id: f.sha256 for f in entries.values()}
