"""``make demo``: the main job end to end on the embedded defaults, printing each command.

Part 1, the recipe life cycle: lock -> run -> run again (cache hit) -> replay (verdict) ->
export RO-Crate + bundle -> import the bundle into a second, empty home -> replay there.
Part 2, through the Long Term Archive: the input is uploaded to a local archive server,
migrated to (simulated) tape and evicted from disk; a recipe reading it as ``lta://`` is locked
and run, which stages it back through the WLCG Tape REST API and copies it with a verified
checksum; then replayed. Everything lives under ``.demo/`` (recreated on every demo) so it never
touches the user's own run store.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from appliance.cli import main as appliance
from appliance.config import REPO_ROOT

DEMO = Path(os.environ.get("APPLIANCE_DEMO_DIR") or REPO_ROOT / ".demo")
RECIPE = REPO_ROOT / "recipes" / "fits-sky-model"


def step(title: str, *args: str, home: Path) -> int:
    print(f"\n== {title}\n$ appliance {shlex.join(args)}", flush=True)
    os.environ["APPLIANCE_HOME"] = str(home)
    code = appliance(list(args))
    if code != 0:
        print(f"demo: step failed with exit code {code}", file=sys.stderr)
        raise SystemExit(code)
    return code


def dataclient_step(title: str, *args: str) -> None:
    from appliance.dataclient.cli import main as dataclient

    print(f"\n== {title}\n$ dataclient {shlex.join(args)}", flush=True)
    code = dataclient(list(args))
    if code != 0:
        raise SystemExit(f"demo: dataclient failed with exit code {code}")


def latest_run(home: Path) -> str:
    runs = sorted(p.name for p in (home / "runs").iterdir())
    return runs[-1]


def main() -> int:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    home, elsewhere = DEMO / "home", DEMO / "elsewhere"
    # A copy, locked afresh: the demo never writes into the repository (its recipe.lock pins the
    # tracked image ID, which a machine whose mirror moved may only have as a local stand-in).
    recipe = DEMO / RECIPE.name
    shutil.copytree(RECIPE, recipe, ignore=shutil.ignore_patterns("recipe.lock", "__pycache__"))
    step("lock a copy of the recipe: image ID + input checksums", "lock", str(recipe), home=home)
    step("run it hermetically", "run", "-q", str(recipe), "-o", str(DEMO / "outputs"), home=home)
    run_id = latest_run(home)
    step("run again: same cache key, outputs reused", "run", "-q", str(recipe), home=home)
    step("replay the run and compare outputs by policy", "replay", "-q", run_id, home=home)
    step("export provenance and a self-contained bundle", "export", run_id,
         "--ro-crate", str(DEMO / "ro-crate"), "--bundle", str(DEMO / "bundle.tar"), home=home)
    step("import the bundle into an empty home (no registry, no network)", "import",
         str(DEMO / "bundle.tar"), home=elsewhere)
    step("replay from the imported bundle", "replay", "-q", "--json", run_id, home=elsewhere)
    record = json.loads((home / "runs" / run_id / "record.json").read_text())
    print(f"\ndemo: outputs in {DEMO / 'outputs'}; run record {home / 'runs' / run_id / 'record.json'}; "
          f"image {record['image']['image_id'][:19]}...; RO-Crate {DEMO / 'ro-crate'}")
    through_the_archive()
    return 0


def through_the_archive() -> None:
    from appliance.demo_archive import archive_recipe, start_archive, wait_for

    print("\n#### Part 2: the same analysis with its input on (simulated) tape in the archive", flush=True)
    server, pki, token = start_archive(DEMO)
    try:
        base = f"davs://localhost:{server.port}"
        os.environ.update({"BEARER_TOKEN": token, "X509_CERT_DIR": str(pki.cert_dir)})
        config = DEMO / "appliance.yaml"
        config.write_text(json.dumps({"resolvers": {"lta_url": base, "ca_dir": str(pki.cert_dir)}}))
        os.environ["APPLIANCE_CONFIG"] = str(config)
        lta_path = "/demo/fits-sky-model/psf.fits"
        dataclient_step("upload the input to the archive (checksum verified)", "put", "--no-progress",
                        str(RECIPE / "data" / "psf.fits"), f"{base}{lta_path}")
        archive = server.archive
        wait_for(lambda: archive.locality(lta_path) == "DISK_AND_TAPE", "migration to tape")
        archive.evict_path(lta_path)
        print(f"archive: {lta_path} migrated to tape, disk copy evicted: locality {archive.locality(lta_path)}")
        recipe = archive_recipe(RECIPE, DEMO / "fits-sky-model-from-lta", lta_path)
        step("lock: the input is staged from tape, copied and hashed", "lock", str(recipe), home=DEMO / "lta-home")
        print(f"archive: after staging, locality {archive.locality(lta_path)}")
        archive.evict_path(lta_path)
        print(f"archive: evicted again: locality {archive.locality(lta_path)}")
        fresh = DEMO / "lta-home-2"
        step("run in a fresh home: stage + transfer + run", "run", "-q", str(recipe), home=fresh)
        run_id = latest_run(fresh)
        step("replay", "replay", "-q", run_id, home=fresh)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
