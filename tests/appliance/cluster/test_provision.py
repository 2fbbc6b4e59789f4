"""ansible-runner events folded into per-host tallies, and a real (tiny) run through the runner."""

from __future__ import annotations

import sys

from appliance.cluster.provision import EventTally, run_site


def ev(kind, host=None, **data):
    return {"event": kind, "event_data": {"host": host, **data}}


def test_tally_counts_changed_failed_and_ignored():
    t = EventTally()
    events = [
        ev("playbook_on_task_start", task="Install"),
        ev("runner_on_start", "a"),
        ev("runner_on_ok", "a", res={"changed": True}),
        ev("runner_on_ok", "b", res={"changed": False}),
        ev("runner_on_skipped", "b"),
        ev("runner_on_failed", "a", task="Probe", ignore_errors=True, res={"msg": "ignored"}),
        ev("runner_on_failed", "b", task="Start", res={"msg": "boom"}),
        ev("runner_on_unreachable", "c", res={"msg": "no route"}),
        ev("playbook_on_stats"),
    ]
    advanced = [t.add(e) for e in events]
    assert advanced == [False, False, True, True, True, True, True, True, False]
    assert t.hosts["a"].changed == 1 and t.hosts["a"].ok == 2 and t.hosts["a"].failed == 0
    assert t.hosts["b"].failed == 1 and t.hosts["b"].skipped == 1
    assert t.hosts["c"].unreachable == 1
    assert t.failures == ["b: Start: boom", "c: unreachable: no route"]
    assert t.totals().changed == 1 and t.last_task == "Install"


CENSORED = {"censored": "the output has been hidden due to the fact that 'no_log: true' was specified "
                         "for this result"}


def test_no_log_results_are_counted_and_stats_win():
    """A no_log result carries no `changed` (measured: res is only {"censored": ...}); the display
    line and then playbook_on_stats decide."""
    t = EventTally()
    t.add({"event": "runner_on_ok", "stdout": "\x1b[0;33mchanged: [a]\x1b[0m",
           "event_data": {"host": "a", "res": CENSORED}})
    t.add({"event": "runner_on_ok", "stdout": "ok: [a]", "event_data": {"host": "a", "res": CENSORED}})
    assert t.hosts["a"].changed == 1 and t.hosts["a"].ok == 2 and not t.stats_seen
    # a censored loop task has no display line: only the stats know it changed
    t.add({"event": "runner_on_ok", "stdout": "", "event_data": {"host": "a", "res": CENSORED}})
    t.add(ev("playbook_on_stats", changed={"a": 2, "b": 0}, ok={"a": 3, "b": 1}))
    assert t.stats_seen and t.hosts["a"].changed == 2 and t.hosts["b"].changed == 0


def test_real_run_counts_no_log_tasks(tmp_path):
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Secret change\n      ansible.builtin.command: 'true'\n      no_log: true\n"
        "    - name: Secret loop\n      ansible.builtin.command: 'echo {{ item }}'\n      loop: [a, b]\n"
        "      no_log: true\n      changed_when: item == 'a'\n"
        "    - name: Secret unchanged\n      ansible.builtin.command: 'true'\n      no_log: true\n"
        "      changed_when: false\n")
    inv = tmp_path / "hosts.yml"
    inv.write_text(f"all:\n  hosts:\n    n1:\n      ansible_connection: local\n"
                   f"      ansible_python_interpreter: {sys.executable}\n")
    events = []
    result = run_site([inv], tmp_path / "state", playbook=play, progress=False, on_event=events.append)
    assert result.ok, result.report()
    oks = [e for e in events if e["event"] == "runner_on_ok"]
    assert all("changed" not in e["event_data"]["res"] for e in oks)  # what made the count blind
    assert result.tally.stats_seen and result.changed_by_host() == {"n1": 2}


def test_real_run_keeps_artifacts_and_reports(tmp_path):
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Touch\n      ansible.builtin.file:\n        path: '{{ out }}'\n        state: touch\n"
        "        mode: '0644'\n"
        "    - name: Look\n      ansible.builtin.stat:\n        path: '{{ out }}'\n")
    inv = tmp_path / "hosts.yml"
    inv.write_text(f"all:\n  hosts:\n    n1:\n      ansible_connection: local\n"
                   f"      ansible_python_interpreter: {sys.executable}\n")
    events = []
    result = run_site([inv], tmp_path / "state", playbook=play, progress=False,
                      extravars={"out": str(tmp_path / "touched")}, on_event=events.append)
    assert result.ok, result.report()
    assert result.rc == 0 and result.status == "successful"
    assert result.tally.hosts["n1"].ok == 2 and result.changed_by_host() == {"n1": 1}
    assert (tmp_path / "touched").exists()
    assert (tmp_path / "state" / "runs").is_dir() and "artifacts" in result.artifacts
    assert any(e["event"] == "playbook_on_stats" for e in events)
    assert "n1" in result.report() and result.to_json()["hosts"]["n1"]["changed"] == 1


def test_failed_run_is_not_ok(tmp_path):
    play = tmp_path / "play.yml"
    play.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                    "    - name: Fail\n      ansible.builtin.fail:\n        msg: deliberately\n")
    inv = tmp_path / "hosts.yml"
    inv.write_text(f"all:\n  hosts:\n    n1:\n      ansible_connection: local\n"
                   f"      ansible_python_interpreter: {sys.executable}\n")
    result = run_site([inv], tmp_path / "state", playbook=play, progress=False)
    assert not result.ok and result.rc != 0 and result.status == "failed"
    assert result.tally.failures == ["n1: Fail: deliberately"]
