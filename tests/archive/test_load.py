"""The archive under load: 20 clients for 10 s, the mix of bench/archive_load.py (GET, PUT,
PROPFIND, stage, stage status) over TLS with a bearer token, against a real server whose tape
engine migrates and recalls meanwhile. Asserts 0 errors and that the server's state afterwards is
what the clients were told (not a timing assertion: figures belong to the bench).

Then what the load fixes must not change: GETs' last-access times are batched in memory, yet
eviction still drops the least recently used file and a clean close keeps them; a PROPFIND
Depth 1 listing, now a few queries for the whole collection, answers for every member exactly
what the member's own Depth 0 PROPFIND and the catalog's replica rows say."""

from __future__ import annotations

import importlib.util
import io
import re
from pathlib import Path

import pytest

from archive.catalogs import open_catalog
from archive.engine import Archive
from archive.webdav import LTA_NS
from tests.archive.conftest import server_config, tls_session, wait_for

BENCH = Path(__file__).resolve().parents[2] / "bench" / "archive_load.py"


@pytest.fixture(scope="module")
def load_bench():
    spec = importlib.util.spec_from_file_location("archive_load_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_twenty_clients_ten_seconds_no_error(tmp_path, pki, token_key, mint, load_bench):
    from archive.server import serve_in_thread

    cfg = server_config(tmp_path / "root", pki, token_key[1])
    srv = serve_in_thread(cfg)
    try:
        t = load_bench.Target("archive", srv.url, str(pki.ca_cert), {"token": mint()},
                              load_bench.OURS_MIX, True)
        dirs = [f"/load/d{i}" for i in range(2)]
        files = [f"{d}/f{j}.bin" for d in dirs for j in range(20)]
        size = 16 << 10
        load_bench.populate(t, dirs, files, size, clients=20)
        res = load_bench.run_load(t, clients=20, seconds=10, files=files, dirs=dirs, size=size)

        assert res["errors"] == 0, res["error_samples"]
        assert set(res["ops"]) == {"GET", "PUT", "PROPFIND", "STAGE", "STATUS"}, res["ops"]
        assert all(o["n"] >= 5 for o in res["ops"].values()), res["ops"]
        a = srv.archive
        # every acknowledged PUT is in the catalog, at its size, and nothing else is
        stored = [f for i in range(20) for f in a.catalog.list_dir(f"/load/put/c{i}")[1]]
        assert len(stored) == res["ops"]["PUT"]["n"]
        assert {f.size for f in stored} == {size}
        # the engine's cached migration candidates are what a fresh catalog scan finds
        with a.lock:
            cached = [(f.file_id, held) for f, held in a._migration_candidates()]
            fresh = [(f.file_id, held) for f, held in
                     a.catalog.migration_candidates(cfg.tape.copies)]
        assert cached == fresh
    finally:
        srv.stop()


def _put(a: Archive, path: str, size: int) -> None:
    a.put_stream(path, io.BytesIO(b"x" * size), size, "tester")


def test_batched_access_times_still_decide_eviction(make_archive):
    a = make_archive()  # cache 10 MB, watermarks 90 % / 75 %
    for name in ("a", "b", "c"):
        _put(a, f"/lru/{name}", 2_500_000)
        a.run_for(10)
    a.run_for(1000)  # all three on tape, 7.5 MB on disk: below the high watermark
    assert {a.locality(f"/lru/{n}") for n in "abc"} == {"DISK_AND_TAPE"}
    f, _ = a.open_for_read("/lru/a")  # the oldest file is now the most recently read
    read_at = a.clock.now()
    # the GET wrote nothing to the catalog: the time waits in memory for the housekeeping
    assert a.catalog.disk_replica(f.file_id).last_access < read_at
    _put(a, "/lru/d", 2_500_000)  # 10 MB: above the high watermark, evict down to 7.5 MB
    a.run_for(1000)
    assert a.locality("/lru/b") == "TAPE", "the least recently used file goes first"
    assert {a.locality(f"/lru/{n}") for n in "acd"} == {"DISK_AND_TAPE"}
    assert a.catalog.disk_replica(f.file_id).last_access == read_at


def test_access_times_survive_a_clean_close(make_archive):
    a = make_archive()
    _put(a, "/lru/x", 1000)
    a.run_for(10)
    f, _ = a.open_for_read("/lru/x")
    read_at = a.clock.now()
    assert a.catalog.disk_replica(f.file_id).last_access < read_at  # batched, not written
    cfg = a.cfg
    a.close()
    cat = open_catalog(cfg)
    try:
        assert cat.disk_replica(f.file_id).last_access == read_at
    finally:
        cat.close()


def _responses(body: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in
            re.finditer(r"<D:response><D:href>([^<]*)</D:href>.*?</D:response>", body)}


def test_propfind_listing_equals_its_members_one_by_one(lta, pki, mint):
    s = tls_session(pki, mint(), lta.url + "/g2list")
    assert s.request("MKCOL", s.base).status_code == 201
    assert s.request("MKCOL", s.base + "/sub").status_code == 201
    for i in range(6):
        assert s.put(f"{s.base}/f{i}.bin", data=b"%d" % i * (i + 1)).status_code == 201
    cat = lta.archive.catalog
    # every file on tape first: a migration between two PROPFINDs would change a locality
    wait_for(lambda: {lta.archive.locality(f"/g2list/f{i}.bin") for i in range(6)}
             == {"DISK_AND_TAPE"}, what="the listing's files on tape")
    tape_only = cat.get_file("/g2list/f1.bin")
    cat.remove_disk_replica(tape_only.file_id)  # as after eviction
    patch = (b'<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop>'
             b'<Z:colour>%s</Z:colour><Z:n>%d</Z:n></D:prop></D:set></D:propertyupdate>')
    for i, member in enumerate(("", "/sub", "/f2.bin", "/f4.bin")):
        r = s.request("PROPPATCH", s.base + member, data=patch % (member.encode(), i))
        assert r.status_code == 207 and "200 OK" in r.text
    for body in (b"", b'<D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>',
                 b'<D:propfind xmlns:D="DAV:" xmlns:Z="urn:z" xmlns:L="%s"><D:prop><Z:colour/>'
                 b'<L:locality/><D:getetag/><D:lockdiscovery/></D:prop></D:propfind>'
                 % LTA_NS.encode()):
        r = s.request("PROPFIND", s.base + "/", data=body, headers={"Depth": "1"})
        assert r.status_code == 207
        listing = _responses(r.text)
        assert len(listing) == 8, listing.keys()  # itself, sub/, six files
        for href, got in listing.items():
            one = s.request("PROPFIND", lta.url + href, data=body, headers={"Depth": "0"})
            assert one.status_code == 207 and _responses(one.text) == {href: got}
    # the oracle: what the catalog's replica rows and dead properties say, member by member
    r = s.request("PROPFIND", s.base + "/", data=b"", headers={"Depth": "1"})
    listing = _responses(r.text)
    for f in cat.list_dir("/g2list")[1]:
        disk, tape = cat.disk_replica(f.file_id) is not None, bool(cat.tape_replicas(f.file_id))
        want = ("DISK_AND_TAPE" if disk and tape else "DISK" if disk else
                "TAPE" if tape else "LOST")
        got = listing["/g2list/" + f.path.rsplit("/", 1)[-1]]
        assert f"<L:locality>{want}</L:locality>" in got, (f.path, want, got)
        for xml in cat.get_props(f.path).values():
            assert xml in got
    assert "<L:locality>TAPE</L:locality>" in listing["/g2list/f1.bin"]
    assert "/g2list/" in listing and "/g2list/sub/" in listing
    for path, href in (("/g2list", "/g2list/"), ("/g2list/sub", "/g2list/sub/")):
        props = cat.get_props(path)
        assert props and all(xml in listing[href] for xml in props.values())
