"""`cluster status` probes: which services each node's groups imply, and the probe script really run.

The full proof against the real archive, GridFTP and MariaDB is in test_local_cluster.py
(test_status_and_logs); here the probe runs on a local node against a real HTTP server of the
standard library and a port with nothing listening.
"""

from __future__ import annotations

import http.server
import socket
import threading

from appliance.cluster.health import checks_for, role_defaults, status_command
from appliance.cluster.inventory import Node
from appliance.cluster.nodes import run_on


def test_checks_follow_groups_vars_and_role_defaults():
    node = Node("lta", ("archive", "gridftp"), vars={"archive_port": 9443, "gridftp_port": "{{ x }}"})
    checks = {c["name"]: c for c in checks_for(node)}
    assert set(checks) == {"archive", "gridftp"}
    assert checks["archive"]["port"] == 9443 and checks["archive"]["scheme"] == "http"
    assert checks["archive"]["path"] == role_defaults()["archive_health_path"]
    assert checks["gridftp"]["port"] == role_defaults()["gridftp_port"]  # Jinja: not resolvable here
    czar = {c["name"] for c in checks_for(Node("czar", ("qserv_czar", "mariadb")))}
    assert czar == {"mariadb", "qserv czar proxy", "qserv czar http", "qserv replication controller"}
    assert checks_for(Node("plain", ("pipeline",))) == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.send_response(200 if self.path == "/.well-known/wlcg-tape-rest-api" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_probe_reports_hostname_ok_and_failed_services():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        node = Node("here", ("archive", "mariadb"), connection="local",
                    vars={"archive_port": server.server_address[1], "mariadb_port": _closed_port()})
        out = run_on([node], status_command, timeout=30)
    finally:
        server.shutdown()
    text = out.results[0].stdout
    assert f"hostname: {socket.gethostname()}" in text and "uptime:" in text
    assert "service archive: ok (http://127.0.0.1:" in text
    assert "service mariadb: FAILED" in text and not out.ok  # a dead service fails the status
    ok = run_on([Node("here", ("pipeline",), connection="local")], status_command, timeout=30)
    assert ok.ok and "hostname: " in ok.results[0].stdout


def test_jinja_certificate_means_tls_first():
    """The local cluster's archive_tls_cert_src is a Jinja expression: not the empty default."""
    node = Node("lta", ("archive",), vars={"archive_tls_cert_src": "{{ cluster_state_dir }}/pki/hostcert.pem"})
    assert checks_for(node)[0]["scheme"] == "auto"
    assert checks_for(Node("lta", ("archive",), vars={"archive_tls_cert_src": "/pki/c.pem"}))[0]["scheme"] == "https"
    assert checks_for(Node("lta", ("archive",), vars={"archive_tls_cert_src": ""}))[0]["scheme"] == "http"


def _serve(tls_root=None):
    import ssl

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    if tls_root is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls_root / "hostcert.pem", tls_root / "hostkey.pem")
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_auto_probe_speaks_tls_to_a_tls_server_and_plain_http_to_a_plain_one(tmp_path):
    """The open bug of #15: plain HTTP sent to the archive's TLS port got "Connection reset by peer"."""
    from appliance.cluster.pki import make_cluster_pki

    make_cluster_pki(tmp_path / "pki")
    jinja = {"archive_tls_cert_src": "{{ cluster_state_dir }}/pki/hostcert.pem"}
    for tls_root, scheme in ((tmp_path / "pki", "https"), (None, "http")):
        server = _serve(tls_root)
        try:
            node = Node("here", ("archive",), connection="local",
                        vars={**jinja, "archive_port": server.server_address[1]})
            out = run_on([node], status_command, timeout=60)
        finally:
            server.shutdown()
        assert out.ok and f"service archive: ok ({scheme}://127.0.0.1:" in out.results[0].stdout, \
            out.results[0].stdout
    # what the probe did before the fix: plain HTTP to the TLS port fails (reset or empty reply)
    server = _serve(tmp_path / "pki")
    try:
        node = Node("here", ("archive",), connection="local",
                    vars={"archive_tls_cert_src": "", "archive_port": server.server_address[1]})
        out = run_on([node], status_command, timeout=60)
    finally:
        server.shutdown()
    assert not out.ok and "service archive: FAILED" in out.results[0].stdout
