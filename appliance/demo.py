"""``make demo``: the main job end to end on the embedded defaults, printing each command.

lock -> run -> run again (cache hit) -> replay (verdict) -> export RO-Crate + bundle ->
import the bundle into a second, empty home -> replay there. Everything lives under ``.demo/``
(recreated on every demo) so it never touches the user's own run store.
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

DEMO = REPO_ROOT / ".demo"
RECIPE = REPO_ROOT / "recipes" / "fits-sky-model"


def step(title: str, *args: str, home: Path) -> int:
    print(f"\n== {title}\n$ appliance {shlex.join(args)}", flush=True)
    os.environ["APPLIANCE_HOME"] = str(home)
    code = appliance(list(args))
    if code != 0:
        print(f"demo: step failed with exit code {code}", file=sys.stderr)
        raise SystemExit(code)
    return code


def latest_run(home: Path) -> str:
    runs = sorted(p.name for p in (home / "runs").iterdir())
    return runs[-1]


def main() -> int:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    home, elsewhere = DEMO / "home", DEMO / "elsewhere"
    step("lock the recipe: image ID + input checksums", "lock", str(RECIPE), home=home)
    step("run it hermetically", "run", "-q", str(RECIPE), "-o", str(DEMO / "outputs"), home=home)
    run_id = latest_run(home)
    step("run again: same cache key, outputs reused", "run", "-q", str(RECIPE), home=home)
    step("replay the run and compare outputs by policy", "replay", "-q", run_id, home=home)
    step("export provenance and a self-contained bundle", "export", run_id,
         "--ro-crate", str(DEMO / "ro-crate"), "--bundle", str(DEMO / "bundle.tar"), home=home)
    step("import the bundle into an empty home (no registry, no network)", "import",
         str(DEMO / "bundle.tar"), home=elsewhere)
    step("replay from the imported bundle", "replay", "-q", "--json", run_id, home=elsewhere)
    record = json.loads((home / "runs" / run_id / "record.json").read_text())
    print(f"\ndemo: outputs in {DEMO / 'outputs'}; run record {home / 'runs' / run_id / 'record.json'}; "
          f"image {record['image']['image_id'][:19]}...; RO-Crate {DEMO / 'ro-crate'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
