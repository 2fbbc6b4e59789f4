"""Writes data/cluster_field.fits, this recipe's input, the way real data would reach it.

The recipe runs without network, so it cannot query a catalog database. Its input is a query
export: this script runs the whole Qserv chain on the synthetic cluster field against a private,
throw-away MariaDB (Debian's mariadbd), checks that the reference and the chunked catalog give
identical answers, and exports the cluster field from the reference database as a FITS table.

Run from the repository root with the project's venv (needs mariadbd and mariadb-install-db):

    .venv/bin/python recipes/cluster-catalog/make_input.py

Against a real Qserv, the same file comes from
``appliance qserv export --host <czar> --port 4040 --database <db> --out cluster_field.fits``.
The output is deterministic (seeded generator, rows ordered by objectId, no dates in the header).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from appliance.cli import main

HERE = Path(__file__).resolve().parent


def run(*argv: str) -> None:
    rc = main(list(argv))
    if rc != 0:
        sys.exit(f"step failed ({rc}): appliance {' '.join(argv)}")


def build() -> Path:
    from appliance.qserv.localdb import LocalMariaDB

    with tempfile.TemporaryDirectory(prefix="cluster-catalog-") as tmp:
        t = Path(tmp)
        server = LocalMariaDB(t / "mariadb")
        cfg = server.start()
        db = ["--socket", str(cfg.unix_socket)]
        try:
            run("qserv", "generate", "--out", str(t / "field"))
            run("qserv", "convert", "--director", f"Object={t}/field/Object.fits", "--child", f"Source={t}/field/Source_*.fits", "--out", str(t / "conv"), "--json")
            run("qserv", "partition", "--converted", str(t / "conv"), "--out", str(t / "parts"), "--json")
            run("qserv", "load", "--converted", str(t / "conv"), "--partitioned", str(t / "parts"), *db, "--json")
            run("qserv", "verify", "--database", "cluster", *db)
            out = HERE / "data" / "cluster_field.fits"
            run("qserv", "export", "--database", "cluster", "--out", str(out), "--radius", "0.3", "--schema", str(t / "conv" / "schema.yaml"), *db)
            return out
        finally:
            server.stop()


if __name__ == "__main__":
    print(build())
