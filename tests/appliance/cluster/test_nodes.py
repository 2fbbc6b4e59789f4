"""Ad-hoc commands: local and unreachable SSH nodes come back as result values."""

from __future__ import annotations

import socket

from appliance.cluster.inventory import Node
from appliance.cluster.nodes import run_on


def test_local_node_runs_and_failures_are_values():
    ok = run_on([Node("here", ("all",), connection="local")], "echo hi")
    assert ok.ok and ok.results[0].stdout.strip() == "hi"
    bad = run_on([Node("here", ("all",), connection="local")], ["sh", "-c", "exit 3"])
    assert not bad.ok and bad.results[0].exit_code == 3
    assert "FAILED rc=3" in bad.report()


def test_unreachable_ssh_node_through_fabric_group():
    with socket.socket() as s:  # a port with nothing listening: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = [Node("ghost", ("all",), connection="ssh", address="127.0.0.1", port=port, user="nobody"),
             Node("here", ("all",), connection="local")]
    out = run_on(nodes, "true", timeout=10)
    assert [r.node for r in out.results] == ["ghost", "here"]
    assert out.results[0].exit_code == -1 and out.results[1].ok
    assert not out.ok and "UNREACHABLE" in out.report()
    assert out.to_json()["nodes"][0]["ok"] is False


def test_missing_container_is_unreachable():
    out = run_on([Node("gone", ("all",), connection="community.docker.docker",
                       address="appliance-test-no-such-container")], "true", timeout=10)
    assert out.results[0].exit_code == -1
