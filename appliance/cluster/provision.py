"""Run ``playbooks/site.yml`` through ansible-runner; its events drive a progress bar and a result.

Why ansible-runner rather than a bare subprocess: every task result arrives as a structured event
(host, task, changed, failed), so the progress bar counts real work per host, the result is data
(not scraped text), and the whole run (stdout, events, status, rc) stays in an artifacts directory
the user can read afterwards. The runner's ``rc`` *and* ``status`` are both checked: a run can end
without an exception and still have failed or timed out.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.cluster.inventory import PLAYBOOKS, ansible_env

SITE = PLAYBOOKS / "site.yml"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class HostTally:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    unreachable: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class EventTally:
    """Pure fold over ansible-runner events: per-host counts and the failures' messages."""

    hosts: dict[str, HostTally] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    tasks_started: int = 0
    last_task: str = ""
    stats_seen: bool = False  # playbook_on_stats arrived: ``changed`` is Ansible's own count

    def add(self, event: dict[str, Any]) -> bool:
        """Fold one event in; True when it finished a task on a host (the bar advances).

        A task with ``no_log`` reaches us censored: its ``res`` is only ``{"censored": ...}``,
        without ``changed`` (measured with ansible-runner 2.4 / ansible-core 2.17). Such a result
        counts as changed when the event's display line says so (``changed: [host]``), and the
        final ``playbook_on_stats`` event, which carries Ansible's per-host totals whatever
        ``no_log`` hid, replaces the running count: the idempotence proof sees every task.
        """
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_stats":
            self._reconcile(data)
            return False
        if kind == "playbook_on_task_start":
            self.tasks_started += 1
            self.last_task = str(data.get("task", ""))
            return False
        host = data.get("host")
        if not host or not kind.startswith("runner_on_") or kind in ("runner_on_start", "runner_on_async_poll"):
            return False
        t = self.hosts.setdefault(host, HostTally())
        result = data.get("res") or {}
        if kind == "runner_on_ok":
            t.ok += 1
            t.changed += _changed(result, event)
        elif kind == "runner_on_skipped":
            t.skipped += 1
        elif kind == "runner_on_unreachable":
            t.unreachable += 1
            self.failures.append(f"{host}: unreachable: {result.get('msg', '')}".strip())
        elif kind == "runner_on_failed":
            if data.get("ignore_errors"):
                t.ok += 1
            else:
                t.failed += 1
                msg = result.get("msg") or result.get("stderr") or result.get("reason") or ""
                self.failures.append(f"{host}: {data.get('task', '?')}: {str(msg).strip()[:500]}")
        else:
            return False
        return True

    def _reconcile(self, stats: dict[str, Any]) -> None:
        if not isinstance(stats.get("changed"), dict):
            return  # not Ansible's stats shape: keep the running count
        self.stats_seen = True
        changed = stats["changed"]
        for host in set(changed) | set(stats.get("ok") or {}) | set(self.hosts):
            self.hosts.setdefault(host, HostTally()).changed = int(changed.get(host, 0))

    def totals(self) -> HostTally:
        total = HostTally()
        for t in self.hosts.values():
            for k, v in t.to_json().items():
                setattr(total, k, getattr(total, k) + v)
        return total


def _changed(result: dict[str, Any], event: dict[str, Any]) -> bool:
    if "changed" in result:
        return bool(result["changed"])
    if "censored" in result:  # no_log: only the display line tells
        return _ANSI.sub("", str(event.get("stdout", ""))).lstrip().startswith("changed:")
    return False


@dataclass
class ProvisionResult:
    """Verdict of one ``site.yml`` run."""

    status: str  # ansible-runner: successful | failed | timeout | canceled
    rc: int
    artifacts: str
    seconds: float
    tally: EventTally
    check_mode: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.status == "successful" and not self.tally.failures

    @property
    def changed(self) -> int:
        return self.tally.totals().changed

    def changed_by_host(self) -> dict[str, int]:
        return {h: t.changed for h, t in sorted(self.tally.hosts.items())}

    def report(self) -> str:
        lines = [f"site.yml {'(check mode) ' if self.check_mode else ''}{self.status}, rc={self.rc}, "
                 f"{self.seconds:.1f} s"]
        width = max([len(h) for h in self.tally.hosts] + [4])
        lines.append(f"  {'host':<{width}}  {'ok':>4} {'changed':>7} {'failed':>6} {'skipped':>7} {'unreach':>7}")
        for host, t in sorted(self.tally.hosts.items()):
            lines.append(f"  {host:<{width}}  {t.ok:>4} {t.changed:>7} {t.failed:>6} {t.skipped:>7} "
                         f"{t.unreachable:>7}")
        lines += [f"  FAILED {f}" for f in self.tally.failures]
        lines.append(f"  artifacts: {self.artifacts}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "status": self.status, "rc": self.rc, "artifacts": self.artifacts,
                "seconds": round(self.seconds, 3), "check_mode": self.check_mode,
                "hosts": {h: t.to_json() for h, t in sorted(self.tally.hosts.items())},
                "failures": self.tally.failures}


def run_site(inventories: Sequence[str | Path], state_dir: Path, *, limit: str | None = None,
             tags: str | None = None, skip_tags: str | None = None, check: bool = False,
             extravars: dict[str, Any] | None = None, progress: bool = True,
             playbook: Path = SITE, on_event: Callable[[dict[str, Any]], None] | None = None,
             timeout: int | None = None, vault_password_file: Path | None = None) -> ProvisionResult:
    """Run the playbook; artifacts go to ``state_dir/runs/<timestamp>`` and are kept.

    ``vault_password_file`` decrypts ansible-vault files (``group_vars/all/vault.yml``); without
    it Ansible still honours ``ANSIBLE_VAULT_PASSWORD_FILE`` from the environment. The password
    itself never enters the artifacts (only the file's path is on the command line).
    """
    import ansible_runner
    from tqdm import tqdm

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    private = Path(state_dir) / "runs" / stamp
    private.mkdir(parents=True, exist_ok=True)
    tally = EventTally()
    bar = tqdm(desc="provision", unit="task", disable=not progress, leave=True, dynamic_ncols=True)

    def handler(event: dict[str, Any]) -> bool:
        if tally.add(event):
            total = tally.totals()
            bar.update(1)
            bar.set_postfix(hosts=len(tally.hosts), changed=total.changed,
                            failed=total.failed + total.unreachable, refresh=False)
        elif event.get("event") == "playbook_on_task_start":
            bar.set_description_str(f"provision: {tally.last_task[:40]}", refresh=False)
        if on_event:
            on_event(event)
        return True  # keep the event in the artifacts (False would drop it)

    cmdline = ["--check", "--diff"] if check else []
    if vault_password_file:
        cmdline += ["--vault-password-file", shlex.quote(str(Path(vault_password_file).resolve()))]
    started = dt.datetime.now(dt.UTC)
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(PLAYBOOKS),
            playbook=str(playbook),
            inventory=[str(Path(i).resolve()) for i in inventories],
            limit=limit,
            tags=tags,
            skip_tags=skip_tags,
            extravars=extravars or {},
            envvars={k: v for k, v in ansible_env().items() if k.startswith(("ANSIBLE_", "PATH"))},
            cmdline=" ".join(cmdline) or None,
            event_handler=handler,
            quiet=True,
            timeout=timeout,
        )
    finally:
        bar.close()
    seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
    result = ProvisionResult(status=str(runner.status), rc=int(runner.rc if runner.rc is not None else -1),
                             artifacts=str(Path(runner.config.artifact_dir)), seconds=seconds,
                             tally=tally, check_mode=check)
    (private / "result.json").write_text(json.dumps(result.to_json(), indent=2))
    return result
