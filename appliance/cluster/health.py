"""What ``appliance cluster status`` asks each node: its real host name and its services' health.

Why the probe runs *on the node* (a stdlib Python script handed to ``python3 -c``): the services
bind 127.0.0.1 by default, so only the node itself can reach them; and the node reports the host
name it really has (``socket.gethostname()``, fully qualified when the resolver knows it), which may differ from its inventory name (a container's
is its ID, a VM's what cloud-init gave it). Which services to probe follows the node's inventory
groups; ports and addresses come from the host's variables, else from the role's defaults.

Probes send no credentials and change nothing:

- archive: HTTP(S) GET of ``archive_health_path`` (Tape REST discovery), expects 200 (HTTPS when
  ``archive_tls_cert_src`` is set; a Jinja value there means "TLS first, plain HTTP if the server
  answers the handshake in plain text");
- gridftp: TCP connect to the control port, expects a ``220`` banner;
- mariadb / qserv czar proxy: TCP connect, expects the MySQL protocol handshake (protocol 10)
  and reports the server version it announces (what ``mysqladmin ping`` checks, without a login);
- qserv czar HTTP frontend, replication controller: TCP connect.
"""

from __future__ import annotations

import functools
import json
import shlex
from typing import Any

import yaml

from appliance.cluster.inventory import PLAYBOOKS, Node

PROBE_SCRIPT = r'''
import json, socket, ssl, sys, time, urllib.request
checks = json.loads(sys.argv[1])
name, fqdn = socket.gethostname(), socket.getfqdn()
print("hostname: " + (fqdn if fqdn.split(".")[0] == name else name))
bad = 0
def tcp(host, port, n=256):
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.settimeout(5)
        return s.recv(n) if n else b""
for c in checks:
    kind, name, host, port = c["kind"], c["name"], c["host"], c["port"]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    try:
        if kind == "http":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no post-handshake auth offered
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # liveness, no credentials
            schemes = ["https", "http"] if c["scheme"] == "auto" else [c["scheme"]]
            ok, detail = False, "no answer after 3 attempts"
            for attempt in range(3):  # a reset under load is retried; the last error is reported
                url = "%s://%s:%s%s" % (schemes[0], host, port, c["path"])
                try:
                    with urllib.request.urlopen(url, timeout=10, context=ctx) as r:
                        detail = "%s %d" % (url, r.status)
                        ok = r.status == 200
                    break
                except OSError as e:  # urllib wraps the TLS or socket error in URLError
                    reason = getattr(e, "reason", e)
                    if len(schemes) > 1 and "WRONG_VERSION_NUMBER" in str(reason):
                        schemes.pop(0)  # "auto": the server speaks plain HTTP
                        continue
                    if not isinstance(reason, (ConnectionError, ssl.SSLError)) or attempt == 2:
                        raise
                    time.sleep(1 + attempt)
        elif kind == "banner":
            line = tcp(host, port).decode(errors="replace").strip().splitlines()
            detail = line[0] if line else "no banner"
            ok = detail.startswith("220")
        elif kind == "mysql":
            pkt = tcp(host, port)
            ok = len(pkt) > 5 and pkt[4] == 10
            detail = ("server " + pkt[5:pkt.index(b"\0", 5)].decode(errors="replace")) if ok else \
                "no MySQL handshake (%r)" % pkt[:40]
        else:
            tcp(host, port, 0)
            ok, detail = True, "port %s open" % port
    except Exception as e:
        ok, detail = False, "%s:%s: %s" % (host, port, e)
    bad += not ok
    print("service %s: %s (%s)" % (name, "ok" if ok else "FAILED", detail))
sys.exit(1 if bad else 0)
'''


@functools.cache
def role_defaults() -> dict[str, Any]:
    """Every role's defaults/main.yml merged (the fallback for a variable the inventory lacks)."""
    out: dict[str, Any] = {}
    for path in sorted((PLAYBOOKS / "roles").glob("*/defaults/main.yml")):
        out.update(yaml.safe_load(path.read_text()) or {})
    return out


def _value(node: Node, key: str) -> Any:
    """The node's value for ``key``; a Jinja expression (not resolvable here) falls back to the default."""
    for source in (node.vars, role_defaults()):
        v = source.get(key)
        if v is not None and not (isinstance(v, str) and "{{" in v):
            return v
    return None


def _archive_scheme(node: Node) -> str:
    """``https`` when the node's archive has a certificate, ``http`` when not, ``auto`` when that
    is a Jinja expression not resolvable here (the probe then tries TLS first).

    The expression must not fall back to the role default (empty: plain HTTP): the local container
    cluster sets ``archive_tls_cert_src: "{{ cluster_state_dir }}/pki/hostcert.pem"``, and a plain
    HTTP request to its TLS port is answered by a TLS alert and a reset ("Connection reset by peer").
    """
    raw = node.vars.get("archive_tls_cert_src", role_defaults().get("archive_tls_cert_src"))
    if isinstance(raw, str) and "{{" in raw:
        return "auto"
    return "https" if raw else "http"


def checks_for(node: Node) -> list[dict[str, Any]]:
    """The probes for ``node``'s groups (pure; tested without a node)."""
    g, v = set(node.groups), functools.partial(_value, node)
    checks: list[dict[str, Any]] = []
    if "archive" in g:
        checks.append({"name": "archive", "kind": "http", "host": v("archive_bind_address"),
                       "port": v("archive_port"), "path": v("archive_health_path"),
                       "scheme": _archive_scheme(node)})
    if "gridftp" in g:
        checks.append({"name": "gridftp", "kind": "banner", "host": v("gridftp_control_interface"),
                       "port": v("gridftp_port")})
    if "mariadb" in g:
        checks.append({"name": "mariadb", "kind": "mysql", "host": v("mariadb_bind_address"),
                       "port": v("mariadb_port")})
    if "qserv_czar" in g:
        checks += [{"name": "qserv czar proxy", "kind": "mysql", "host": "127.0.0.1",
                    "port": v("qserv_port_proxy")},
                   {"name": "qserv czar http", "kind": "tcp", "host": "127.0.0.1",
                    "port": v("qserv_port_czar_http")},
                   {"name": "qserv replication controller", "kind": "tcp", "host": "127.0.0.1",
                    "port": v("qserv_port_repl_controller")}]
    return [c for c in checks if c["port"] is not None]


def status_command(node: Node) -> str:
    """Uptime, load, disk, then the probe (host name + services) if the node has python3."""
    from appliance.cluster.nodes import STATUS_COMMAND

    probe = f"python3 -c {shlex.quote(PROBE_SCRIPT)} {shlex.quote(json.dumps(checks_for(node)))}"
    return (f"{STATUS_COMMAND}; if command -v python3 >/dev/null; then {probe}; "
            f"else echo \"hostname: $(hostname -f 2>/dev/null || hostname)\"; fi")


def service_container_logs(node: Node, tail: int) -> str:
    """Output of the service containers a role started for ``node`` (label org.appliance.role).

    A container node's services run on this machine's engine (the node drives it through the
    socket), found by the ``org.appliance.node`` label; an SSH node is asked with ``docker logs``
    (see :func:`ssh_logs_command`).
    """
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=60)
        found = client.containers.list(all=True, filters={"label": [f"org.appliance.node={node.name}",
                                                                   "org.appliance.role"]})
        parts = []
        for c in sorted(found, key=lambda c: c.name):
            role = c.labels.get("org.appliance.role", "?")
            text = c.logs(tail=tail, timestamps=False).decode(errors="replace").rstrip()
            parts.append(f"--- container {c.name} (role {role}, {c.status})\n{text}")
        return "\n".join(parts)
    except DockerException as err:
        return f"--- service containers: engine not reachable: {err}"


def ssh_logs_command(tail: int) -> str:
    """Shell fragment for an SSH node: its own engine's service containers, last ``tail`` lines each."""
    return ("if command -v docker >/dev/null 2>&1; then "
            "for c in $(docker ps -a --filter label=org.appliance.role --format '{{.Names}}' | sort); do "
            f"echo \"--- container $c\"; docker logs --tail {int(tail)} \"$c\" 2>&1; done; fi")

