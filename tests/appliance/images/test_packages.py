"""The package store, the local apt repository, the package file and identity resolution, on
small real .deb files made with dpkg-deb (fast; the image builds are in test_offline)."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
from pathlib import Path

import pytest

from appliance.errors import ChecksumMismatch, ConfigError, ImageMissing
from appliance.hashing import sha256_file
from appliance.images.aptrepo import make_repository, serve
from appliance.images.lock import ImagesLock, LockedImage, effective_lock, resolve
from appliance.images.packages import LockedDeb, PackagesMissing, PackageStore, describe_debs
from appliance.images.packfile import read_packfile, write_packfile
from appliance.images.snapshot import fetch_missing, snapshot_url


def make_deb(tmp: Path, name: str, version: str = "1.0", priority: str = "optional") -> tuple[Path, LockedDeb]:
    root = tmp / f"{name}-src"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr" / "share" / name).mkdir(parents=True)
    (root / "usr" / "share" / name / "hello").write_text(f"{name} {version}\n")
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@t.invalid>\n"
        f"Priority: {priority}\nSection: misc\nDescription: test package\n")
    deb = tmp / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb, LockedDeb(name, version, "all", sha256_file(deb), deb.stat().st_size,
                          f"pool/main/{name[0]}/{name}/{deb.name}", "debian", "required", "admin")


def test_store_adds_verified_files_only(tmp_path: Path) -> None:
    deb, locked = make_deb(tmp_path, "hello")
    store = PackageStore(tmp_path / "store")
    assert store.missing([locked]) == [locked]
    path = store.add(deb, locked)
    assert store.has(locked) and path.read_bytes() == deb.read_bytes()
    wrong = LockedDeb(**{**locked.as_dict(), "sha256": "1" * 64})
    with pytest.raises(ChecksumMismatch):
        store.add(deb, wrong)
    assert not store.path(wrong.sha256).exists()
    with pytest.raises(ChecksumMismatch):
        store.add_stream(iter([b"not the package"]), wrong, "http://x/y.deb")
    assert not store.path(wrong.sha256).exists()
    assert not list(store.path(wrong.sha256).parent.glob(".tmp-*"))  # no partial file left behind


def test_describe_debs_takes_the_index_and_refuses_a_mismatch(tmp_path: Path) -> None:
    deb, locked = make_deb(tmp_path, "hello", priority="optional")
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / deb.name).write_bytes(deb.read_bytes())
    lists = tmp_path / "lists"
    lists.mkdir()
    stanza = (f"Package: hello\nVersion: 1.0\nArchitecture: all\nPriority: required\nSection: admin\n"
              f"Filename: {locked.filename}\nSize: {locked.size}\nSHA256: {locked.sha256}\n")
    (lists / "deb.example_debian-security_dists_bookworm-security_main_binary-amd64_Packages").write_text(stanza)
    [(got, _)] = describe_debs(debs, lists)
    assert got == LockedDeb("hello", "1.0", "all", locked.sha256, locked.size, locked.filename,
                            "debian-security", "required", "admin")  # archive's priority, not the deb's
    (lists / "deb.example_debian-security_dists_bookworm-security_main_binary-amd64_Packages").write_text(
        stanza.replace(locked.sha256, "2" * 64))
    with pytest.raises(ChecksumMismatch):
        describe_debs(debs, lists)


def test_repository_carries_the_archive_priority_and_serves_on_loopback(tmp_path: Path) -> None:
    import requests

    deb, locked = make_deb(tmp_path, "hello", priority="optional")
    store = PackageStore(tmp_path / "store")
    with pytest.raises(PackagesMissing, match="lacks 1 locked package"):
        make_repository([locked], store, tmp_path / "repo0", "bookworm", "amd64", "t")
    store.add(deb, locked)
    repo = make_repository([locked], store, tmp_path / "repo", "bookworm", "amd64", "t")
    packages = (repo / "dists" / "bookworm" / "main" / "binary-amd64" / "Packages").read_text()
    assert "Priority: required" in packages and f"SHA256: {locked.sha256}" in packages
    release = (repo / "dists" / "bookworm" / "Release").read_text()
    assert "Codename: bookworm" in release and "main/binary-amd64/Packages" in release
    with serve(repo) as url:
        assert url.startswith("http://127.0.0.1:")
        got = requests.get(f"{url}/pool/main/{deb.name}", timeout=10)
        assert hashlib.sha256(got.content).hexdigest() == locked.sha256


def image(name: str, image_id: str, debs: list[LockedDeb], replaces: str | None = None) -> LockedImage:
    return LockedImage(name, "mmdebstrap", image_id, ["sha256:l"], "d", "t", debs=debs, replaces=replaces,
                       resolved_at="20261201T000000Z")


def test_lock_round_trip_and_legacy_versions(tmp_path: Path) -> None:
    _, locked = make_deb(tmp_path, "hello")
    lock = ImagesLock(tmp_path / "images.lock", {"base": image("base", "sha256:a", [locked])})
    lock.save()
    again = ImagesLock.load(tmp_path / "images.lock")
    assert again.images["base"].debs == [locked] and again.images["base"].packages == {"hello": "1.0"}
    # one line per package in the file (readable diffs when the mirror moves)
    assert sum("package: hello" in line for line in (tmp_path / "images.lock").read_text().splitlines()) == 1
    legacy = tmp_path / "legacy.lock"
    legacy.write_text("images:\n  base: {builder: mmdebstrap, image_id: 'sha256:a', diff_ids: [], "
                      "definition_sha256: d, tag: t, packages: {bash: '5.2'}}\n")
    assert ImagesLock.load(legacy).images["base"].debs == []
    bad = tmp_path / "bad.lock"
    bad.write_bytes(b"\xff\xfe: [")
    with pytest.raises(ConfigError, match="bad.lock"):
        ImagesLock.load(bad)


def test_resolve_prefers_the_locked_image_then_the_stand_in(tmp_path: Path) -> None:
    tracked = ImagesLock(tmp_path / "images.lock", {"base": image("base", "sha256:locked", [])})
    local = ImagesLock(tmp_path / "local", {"base": image("base", "sha256:local", [], replaces="sha256:locked")})
    assert resolve("base", tracked, local, lambda i: True).image_id == "sha256:locked"
    assert resolve("base", tracked, local, lambda i: i == "sha256:local").image_id == "sha256:local"
    with pytest.raises(ImageMissing, match="rebuild --offline --packages FILE"):
        resolve("base", tracked, local, lambda i: False)
    other = ImagesLock(tmp_path / "o", {"base": image("base", "sha256:local", [], replaces="sha256:older")})
    with pytest.raises(ImageMissing):  # a stand-in for another locked identity does not count
        resolve("base", tracked, other, lambda i: i == "sha256:local")
    eff = effective_lock(tracked, local, lambda i: i == "sha256:local", tmp_path / "eff")
    assert eff.images["base"].image_id == "sha256:local" and eff.images["base"].replaces is None


def test_package_file_round_trip_and_tampering(tmp_path: Path) -> None:
    deb, locked = make_deb(tmp_path, "hello")
    store = PackageStore(tmp_path / "store")
    store.add(deb, locked)
    spec = tmp_path / "images" / "base"
    spec.mkdir(parents=True)
    (spec / "spec.yaml").write_text("name: base\n")
    lock = ImagesLock(tmp_path / "images" / "images.lock", {"base": image("base", "sha256:a", [locked])})
    lock.save()
    pk = tmp_path / "pk.tar"
    summary = write_packfile(pk, lock, [spec], store)
    assert summary.packages == 1 and summary.images == ["base"]
    fresh = PackageStore(tmp_path / "fresh")
    got = read_packfile(pk, fresh, extract_to=tmp_path / "out")
    assert fresh.has(locked) and got.images["base"].image_id == "sha256:a"
    assert (tmp_path / "out" / "base" / "spec.yaml").read_text() == "name: base\n"

    # the same file with one .deb byte changed: refused, nothing enters the store
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(pk) as src, tarfile.open(tampered, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.endswith(".deb"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            import io

            dst.addfile(member, io.BytesIO(data))
    other = PackageStore(tmp_path / "other")
    with pytest.raises(ChecksumMismatch):
        read_packfile(tampered, other)
    assert not other.has(locked)
    (tmp_path / "junk.tar").write_bytes(b"no tar")
    with pytest.raises(ConfigError, match="junk.tar: not a tar file"):
        read_packfile(tmp_path / "junk.tar", other)


def test_snapshot_fetch_checks_every_file(tmp_path: Path) -> None:
    deb, locked = make_deb(tmp_path, "hello")
    template = "http://127.0.0.1:{port}/archive/{{archive}}/{{timestamp}}"
    root = tmp_path / "snap"
    target = root / "archive" / "debian" / "20261201T000000Z" / locked.filename
    target.parent.mkdir(parents=True)
    target.write_bytes(deb.read_bytes())
    with serve(root) as url:
        tpl = template.format(port=url.rsplit(":", 1)[1])
        assert snapshot_url(tpl, locked, "20261201T000000Z").endswith(
            "/archive/debian/20261201T000000Z/" + locked.filename)
        store = PackageStore(tmp_path / "store")
        assert fetch_missing(tpl, [locked], "20261201T000000Z", store) == 1 and store.has(locked)
        target.write_bytes(b"tampered")
        other = PackageStore(tmp_path / "other")
        with pytest.raises(ChecksumMismatch):
            fetch_missing(tpl, [locked], "20261201T000000Z", other)
        assert not other.has(locked)
