"""Provisioning time of the local container cluster: first run, idempotent second run, baseline.

Baseline (same script, same machine): the bare package installation the first run cannot avoid,
done by hand in a fresh container of the locked base image (`apt-get install` of the role's
packages). first/baseline is what Ansible's convergence, checks and verify steps cost on top;
second/first is what an idempotent re-run costs.

  .venv/bin/python bench/cluster_provision.py            # mariadb node only (~2 min)
  .venv/bin/python bench/cluster_provision.py --full     # archive + gridftp + mariadb + pipeline (~8 min)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.cluster import containers  # noqa: E402
from appliance.cluster.provision import run_site  # noqa: E402

PACKAGES = {"mariadb": ["mariadb-server", "mariadb-client", "python3-pymysql", "python3-apt"],
            "full": ["mariadb-server", "mariadb-client", "python3-pymysql", "python3-apt",
                     "globus-gridftp-server-progs", "python3-yaml", "python3-requests", "python3-tqdm",
                     "python3-jsonschema", "python3-docker", "python3-cryptography", "python3-jwt",
                     "python3-psycopg"]}


def baseline(packages: list[str]) -> float:
    """Seconds for apt-get update + install of ``packages`` in a fresh base container."""
    import docker

    client = docker.from_env(timeout=600)
    c = client.containers.run(_base_id(), ["sleep", "infinity"],
                              detach=True, network_mode="host", init=True,
                              labels={containers.LABEL: "bench-baseline"})
    try:
        containers._put_file(c, "/etc/apt/sources.list", containers.apt_sources_text())
        containers._put_file(c, "/usr/sbin/policy-rc.d", containers.POLICY_RC, 0o755)
        t0 = time.monotonic()
        res = c.exec_run(["sh", "-c", "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                          "--no-install-recommends " + " ".join(packages)])
        if res.exit_code:
            raise SystemExit(f"baseline install failed: {res.output.decode()[-800:]}")
        return time.monotonic() - t0
    finally:
        c.remove(force=True)


def _base_id() -> str:
    from appliance.images.lock import ImagesLock

    return ImagesLock.load(containers.REPO_ROOT / "images" / "images.lock").images["base"].image_id


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="every role reachable here (~8 min)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    limit = None if a.full else "mariadb"
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        state_dir = Path(tmp) / "state"
        name = "benchlc"
        st = containers.up(name, state_dir)
        try:
            first = run_site(st.inventories, state_dir, limit=limit, progress=False)
            second = run_site(st.inventories, state_dir, limit=limit, progress=False)
        finally:
            containers.down(state_dir)
    if not (first.ok and second.ok):
        print(first.report(), second.report(), sep="\n")
        return 1
    base = baseline(PACKAGES["full" if a.full else "mariadb"])
    out = {"scope": "full" if a.full else "mariadb", "first_s": round(first.seconds, 1),
           "second_s": round(second.seconds, 1), "second_changed": second.changed,
           "baseline_apt_s": round(base, 1), "first_over_baseline": round(first.seconds / base, 2),
           "second_over_first": round(second.seconds / first.seconds, 2)}
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"scope {out['scope']}: first provision {out['first_s']} s, second (idempotent, "
              f"changed={out['second_changed']}) {out['second_s']} s; bare apt install {out['baseline_apt_s']} s")
        print(f"ratio first/baseline {out['first_over_baseline']}x, second/first {out['second_over_first']}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
