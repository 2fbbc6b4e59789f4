"""Why did the cache miss? The cache key of two runs taken apart, and their outputs compared.

The parts are exactly what ``recipes.cachekey.cache_key`` hashes (image ID, command, params,
environment, code snapshot, each input by mount name), read back from the run record; outputs
are compared with the replay policies (sha256, fits, text, ignore) of run A's record, so ``runs
diff`` says "differs" exactly where ``replay`` would.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any

from appliance.compare.verdict import ReplayVerdict, compare_outputs
from appliance.recipes.cachekey import cache_key
from appliance.runs.record import RunRecord
from appliance.store import ContentStore


def key_parts(r: RunRecord) -> dict[str, Any]:
    """The cache key's parts of a recorded run (the same material ``cache_key`` hashes)."""
    return {"image": r.image.get("image_id"), "command": r.container.get("command"),
            "params": (r.recipe.get("definition") or {}).get("params") or {},
            "env": r.container.get("env") or {}, "code": r.recipe.get("code_sha256"),
            "inputs": {i.name: i.sha256 for i in r.inputs}}


def recomputed_key(r: RunRecord) -> str:
    p = key_parts(r)
    return cache_key(p["image"], p["command"], p["params"], p["env"], p["code"], p["inputs"])


def _mapping_diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "a": a.get(k), "b": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _code_files(store: ContentStore, sha: str | None) -> dict[str, bytes] | None:
    if not sha or not store.has(sha):
        return None
    with tarfile.open(fileobj=io.BytesIO(store.path_of(sha).read_bytes())) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else m.linkname.encode())  # type: ignore[union-attr]
                for m in tar.getmembers() if not m.isdir()}


@dataclass
class RunDiff:
    run_a: str
    run_b: str
    parts: dict[str, Any] = field(default_factory=dict)  # part -> what differs (absent: same)
    outputs: ReplayVerdict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def same_key(self) -> bool:
        return not self.parts

    @property
    def ok(self) -> bool:
        """Same cache key and outputs that replay would call reproduced."""
        return self.same_key and (self.outputs is None or self.outputs.ok)

    def to_dict(self) -> dict[str, Any]:
        return {"run_a": self.run_a, "run_b": self.run_b, "same_key": self.same_key, "ok": self.ok,
                "key_parts": self.parts, "outputs": self.outputs.to_dict() if self.outputs else None,
                "notes": self.notes}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def report(self) -> str:
        lines = [f"runs {self.run_a} and {self.run_b}:"]
        if self.same_key:
            lines.append("  cache key: same (image, command, params, env, code, inputs)")
        else:
            lines.append(f"  cache key differs in: {', '.join(self.parts)}")
            for part, what in self.parts.items():
                if part in ("image", "code", "command"):
                    lines.append(f"    {part}: {what['a']}  ->  {what['b']}")
                    for f in what.get("files", []):
                        lines.append(f"      file {f['path']}: {f['change']}")
                else:
                    for d in what:
                        lines.append(f"    {part} {d['key']}: {d['a']!r}  ->  {d['b']!r}")
        if self.outputs is not None:
            lines.append("  outputs: " + self.outputs.report().replace("\n", "\n  "))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def diff_runs(a: RunRecord, b: RunRecord, store: ContentStore) -> RunDiff:
    d = RunDiff(a.run_id, b.run_id)
    pa, pb = key_parts(a), key_parts(b)
    for part in ("image", "command", "code"):
        if pa[part] != pb[part]:
            d.parts[part] = {"a": pa[part], "b": pb[part]}
    for part in ("params", "env", "inputs"):
        changed = _mapping_diff(pa[part], pb[part])
        if changed:
            d.parts[part] = changed
    if "code" in d.parts:
        fa, fb = _code_files(store, pa["code"]), _code_files(store, pb["code"])
        if fa is None or fb is None:
            d.notes.append("a recipe snapshot is not in the store: cannot say which code files differ")
        else:
            d.parts["code"]["files"] = [
                {"path": p, "change": "added in B" if p not in fa else "removed in B" if p not in fb
                 else "changed"} for p in sorted(set(fa) | set(fb)) if fa.get(p) != fb.get(p)]
    for r in (a, b):
        if recomputed_key(r) != r.cache_key:
            d.notes.append(f"run {r.run_id}: its recorded cache key is not the hash of its parts "
                           "(an older key version, or an edited record)")
    if a.state == "succeeded" and b.state == "succeeded":
        missing = [o.name for o in a.outputs + b.outputs if not store.has(o.sha256)]
        if missing:
            d.notes.append(f"outputs not in the store, not compared: {sorted(set(missing))}")
        else:
            expected = {o.name: (store.path_of(o.sha256), o.compare or "sha256", o.options) for o in a.outputs}
            d.outputs = compare_outputs(expected, {o.name: store.path_of(o.sha256) for o in b.outputs},
                                        a.run_id, b.run_id)
    else:
        d.notes.append(f"outputs not compared: run states {a.state} and {b.state}")
    return d
