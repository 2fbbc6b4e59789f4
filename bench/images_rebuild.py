"""Offline rebuild against the online build, per image; package store against `docker save`.

Both builds run on a bare engine (a second dockerd with its own data root: nothing cached),
each with its own empty image store:
- online (the baseline): `appliance images build` from today's mirror (resolve, download every
  .deb into the store, build);
- offline: `appliance images rebuild --offline --packages FILE` on a second bare engine in a
  network namespace with only loopback, from a package file of the online store.
Sizes: the package store (.debs + lock, each .deb counted once) per image family against the
`docker save` tars of the same images (each image saved alone, as a bundle carries it; and the
family saved together, shared layers once). Goals: offline no slower than online per image; the
store at most the size of the saved tars.

    .venv/bin/python bench/images_rebuild.py [--images base,pipeline,archive]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.images.lock import ImagesLock  # noqa: E402
from tests.bare_engine import bare_engine  # noqa: E402

APPLIANCE = str(ROOT / ".venv" / "bin" / "appliance")


def seconds_by_image(stdout: str) -> dict[str, tuple[float, str]]:
    return {c["name"]: (c["seconds"], c["verdict"]) for c in json.loads(stdout)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default="base,pipeline,archive")
    names = ap.parse_args().images.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        work = Path(tmp)
        images = work / "images"
        for name in names:
            shutil.copytree(ROOT / "images" / name, images / name)
        shutil.copy(ROOT / "images" / "images.lock", images / "images.lock")
        base_env = {"APPLIANCE_IMAGES_DIR": str(images), "APPLIANCE_CONFIG": str(work / "none.yaml")}
        online_store, offline_store = work / "online-store", work / "offline-store"
        sizes: dict[str, int] = {}
        with bare_engine() as engine:
            proc = engine.run([APPLIANCE, "images", "build", *names, "--json"],
                              env={**base_env, "APPLIANCE_IMAGE_STORE": str(online_store)})
            online = seconds_by_image(proc.stdout)
            pk = work / "packages.tar"
            # the package file of what was just built (tracked lock, or the stand-ins if the mirror moved)
            lock = ImagesLock.load(images / "images.lock")
            local = ImagesLock.load(online_store / "images.lock.local")
            for name in names:
                if name in local.images:
                    lock.images[name] = local.images[name]
                    lock.images[name].replaces = None
            lock.save()
            engine.run([APPLIANCE, "images", "export-packages", "-o", str(pk), *names],
                       env={**base_env, "APPLIANCE_IMAGE_STORE": str(online_store)})
            for name in names:
                tar = work / f"{name}.tar"
                engine.run(["docker", "save", "-o", str(tar), lock.images[name].image_id])
                sizes[name] = tar.stat().st_size
            family = work / "family.tar"
            engine.run(["docker", "save", "-o", str(family), *[lock.images[n].image_id for n in names]])
            family_size = family.stat().st_size
        with bare_engine(netns=True) as engine:
            proc = engine.run([APPLIANCE, "images", "rebuild", "--offline", "--packages", str(pk), *names,
                               "--json"], env={**base_env, "APPLIANCE_IMAGE_STORE": str(offline_store)})
            offline = seconds_by_image(proc.stdout)
        debs = {d.sha256: d.size for n in names for d in lock.images[n].debs}
        store_bytes = sum(debs.values()) + (images / "images.lock").stat().st_size
        pk_mib = pk.stat().st_size / 2**20
    print(f"{'image':10} {'online s':>9} {'offline s':>10} {'offline/online':>15}  offline verdict")
    for name in names:
        on, off = online[name][0], offline[name][0]
        print(f"{name:10} {on:9.1f} {off:10.1f} {off / on:14.2f}x  {offline[name][1]}")
    total_on, total_off = sum(v[0] for v in online.values()), sum(v[0] for v in offline.values())
    print(f"{'all':10} {total_on:9.1f} {total_off:10.1f} {total_off / total_on:14.2f}x")
    per_image = sum(sizes.values())
    print(f"\npackage store (debs + lock) for {', '.join(names)}: {store_bytes / 2**20:.1f} MiB "
          f"({len(debs)} .debs); package file {pk_mib:.1f} MiB")
    print(f"docker save, one tar per image: {per_image / 2**20:.1f} MiB "
          f"({', '.join(f'{n} {s / 2**20:.1f}' for n, s in sizes.items())}); store/tars "
          f"{store_bytes / per_image:.2f}x")
    print(f"docker save, the family in one tar: {family_size / 2**20:.1f} MiB; store/tar "
          f"{store_bytes / family_size:.2f}x")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("CI", "")
    sys.exit(main())
