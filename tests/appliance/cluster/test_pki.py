"""The test-cluster PKI: host and user certificates chain to a CA in the Globus directory layout."""

from __future__ import annotations

import subprocess

from appliance.cluster.pki import make_cluster_pki


def test_pki_layout_and_chain(tmp_path):
    pki = make_cluster_pki(tmp_path / "pki")
    names = sorted(p.name for p in pki.cert_dir.iterdir())
    assert len(names) == 2 and names[0].endswith(".0") and names[1].endswith(".signing_policy")
    for cert in (pki.host_cert, pki.user_cert):
        out = subprocess.run(["openssl", "verify", "-CApath", str(pki.cert_dir), str(cert)],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    assert pki.host_key.stat().st_mode & 0o077 == 0
    before = pki.host_cert.read_bytes()
    make_cluster_pki(tmp_path / "pki")  # idempotent: nothing re-issued
    assert pki.host_cert.read_bytes() == before
