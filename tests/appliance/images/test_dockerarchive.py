"""The docker-archive we write gives an image ID that depends only on rootfs and spec."""

import io
import json
import tarfile
from pathlib import Path

from appliance.images.dockerarchive import write_docker_archive
from appliance.images.lock import LockedImage
from appliance.images.manage import compare, package_changes
from appliance.images.packages import LockedDeb
from appliance.images.spec import load_spec


def make_rootfs(path: Path, content: bytes) -> Path:
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("./etc/hello")
        info.size, info.mtime = len(content), 1700000000
        tar.addfile(info, io.BytesIO(content))
    return path


def test_image_id_deterministic(tmp_path: Path) -> None:
    rootfs = make_rootfs(tmp_path / "r.tar", b"hi\n")
    args = dict(repo_tag="t/x:1", created_epoch=1700000000,
                container_config={"Env": ["A=1"], "Cmd": ["/bin/sh"]}, created_by=["test"])
    id1 = write_docker_archive([rootfs], tmp_path / "a.tar", **args)
    id2 = write_docker_archive([rootfs], tmp_path / "b.tar", **args)
    assert id1 == id2 and (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    other = write_docker_archive([make_rootfs(tmp_path / "r2.tar", b"ho\n")], tmp_path / "c.tar", **args)
    assert other != id1
    with tarfile.open(tmp_path / "a.tar") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert manifest[0]["Config"] == id1.removeprefix("sha256:") + ".json"


def test_compare_explains_package_drift(tmp_path: Path) -> None:
    spec = load_spec(Path(__file__).resolve().parents[3] / "images" / "base")
    def deb(name: str, version: str) -> LockedDeb:
        return LockedDeb(name, version, "all", "0" * 64, 1, f"pool/main/{name}_{version}_all.deb")

    old = LockedImage("base", "mmdebstrap", "sha256:1", ["sha256:a"], spec.definition_hash(), "t",
                      debs=[deb("bash", "5.2-1"), deb("tzdata", "2024a")])
    new = LockedImage("base", "mmdebstrap", "sha256:2", ["sha256:b"], spec.definition_hash(), "t",
                      debs=[deb("bash", "5.2-1"), deb("tzdata", "2025b")])
    check = compare(spec, old, new, "mirror")
    assert check.verdict == "differs" and not check.ok
    assert any("tzdata: 2024a -> 2025b" in r for r in check.reasons)
    assert package_changes({"a": "1"}, {"b": "2"}) == ["a: 1 -> absent", "b: absent -> 2"]
