"""Run a recipe hermetically and record it; reuse an earlier run when the cache key matches.

The sequence: load + validate the recipe, check it against its lock, resolve inputs into the
content-addressed store (verifying checksums), snapshot the recipe code, compute the cache key,
run the container (network none, read-only root, non-root user, fixed environment, limits),
store outputs by sha256, write the run record. A failure at any point after the run has an ID
still writes the record (state ``failed``) and leaves nothing half-written in the store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.config import Settings
from appliance.errors import (
    RESTORE_ADVICE,
    ApplianceError,
    ChecksumMismatch,
    ImageMissing,
    InputError,
    RecipeError,
    RunFailed,
)
from appliance.images.lock import ImagesLock, local_lock_path
from appliance.inputs.registry import ResolverRegistry
from appliance.recipes.cachekey import cache_key
from appliance.recipes.lock import LockedInput, RecipeLock, resolve_image
from appliance.recipes.model import Recipe, load_recipe
from appliance.runs import codearchive
from appliance.runs.heartbeat import Heartbeat
from appliance.runs.hostinfo import host_facts
from appliance.runs.record import FileEntry, RunRecord, RunStore, new_run_id, utcnow
from appliance.runtimes import get_runtime
from appliance.runtimes.base import ContainerRuntime, ContainerSpec, Mount
from appliance.store import ContentStore

log = logging.getLogger(__name__)

FIXED_ENV_KEYS = ("TZ", "LC_ALL", "LANG", "SOURCE_DATE_EPOCH", "PYTHONHASHSEED", "OMP_NUM_THREADS",
                  "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "HOME", "APPLIANCE_SEED")


def fixed_env(recipe: Recipe) -> dict[str, str]:
    """The environment every analysis sees: recipe env plus the fixed, reproducibility-critical part."""
    threads = str(max(1, int(recipe.cpus or 1)))
    return {
        **recipe.env,
        "TZ": "UTC", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
        "SOURCE_DATE_EPOCH": str(recipe.source_date_epoch), "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
        "HOME": "/tmp", "APPLIANCE_SEED": str(recipe.seed), "PYTHONDONTWRITEBYTECODE": "1",
    }


@dataclass
class RunOutcome:
    record: RunRecord
    cache_hit: bool = False

    @property
    def ok(self) -> bool:
        return self.record.state == "succeeded"

    def report(self) -> str:
        r = self.record
        head = (f"cache hit: reused the outputs of run {r.run_id} (same cache key {r.cache_key[:16]}...)"
                if self.cache_hit else f"run {r.run_id}: {r.state}")
        lines = [head] + [f"  output {o.name}  sha256:{o.sha256[:16]}...  {o.size} bytes" for o in r.outputs]
        if r.error:
            lines.append(f"  error: {r.error}")
        return "\n".join(lines)


@dataclass
class Prepared:
    recipe: Recipe
    lock: RecipeLock
    image_id: str
    code_sha256: str  # sha256 of the deterministic recipe tar (in the store)
    inputs: list[FileEntry]
    env: dict[str, str]
    command: list[str]
    key: str


def _stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Runner:
    def __init__(self, settings: Settings, runtime: ContainerRuntime | None = None,
                 on_log: Callable[[str], None] | None = None):
        self.settings = settings
        self._runtime = runtime
        self.store = ContentStore(settings.store_root)
        self.runs = RunStore(settings.home)
        self.on_log = on_log or _stderr_log

    @property
    def runtime(self) -> ContainerRuntime:
        if self._runtime is None:
            self._runtime = get_runtime(self.settings.runtime, self.settings)
        return self._runtime

    # -- lock ---------------------------------------------------------------------------------
    def lock(self, recipe_dir: str | Path) -> RecipeLock:
        recipe = load_recipe(recipe_dir)
        image_id = resolve_image(recipe.image, ImagesLock.load(self.settings.images_dir / "images.lock"),
                                 ImagesLock.load(local_lock_path(self.settings.image_store)),
                                 self.runtime.has_image)
        registry = ResolverRegistry(self.settings, recipe.directory)
        locked = []
        for spec in recipe.inputs:
            got = registry.for_uri(spec.uri).checksum(spec.uri, self.store)
            if spec.sha256 and got.sha256 != spec.sha256:
                raise ChecksumMismatch(f"input '{spec.name}' ({spec.uri})", spec.sha256, got.sha256)
            locked.append(LockedInput(spec.name, spec.uri, got.sha256, got.size))
        lock = RecipeLock(recipe=recipe.name, image_ref=recipe.image, image_id=image_id, inputs=locked)
        previous = RecipeLock.load(recipe.directory)
        if previous is not None and (previous.image_ref, previous.image_id, previous.inputs) == (
                lock.image_ref, lock.image_id, lock.inputs):
            return previous  # unchanged: keep the file (and its locked_at) as it is
        lock.save(recipe.directory)
        return lock

    # -- prepare ------------------------------------------------------------------------------
    def prepare(self, recipe_dir: str | Path) -> Prepared:
        recipe = load_recipe(recipe_dir)
        lock = RecipeLock.load(recipe.directory)
        if lock is None:
            self.on_log(f"appliance: no recipe.lock in {recipe.directory}; locking now")
            lock = self.lock(recipe.directory)
        lock.check_matches(recipe)
        registry = ResolverRegistry(self.settings, recipe.directory)
        inputs = []
        for spec in recipe.inputs:
            locked = lock.input(spec.name)
            assert locked is not None
            resolver = registry.for_uri(spec.uri)
            # Local files are re-hashed every time (cheap, and they may have been edited);
            # remote inputs already in the store under their locked hash are not fetched again.
            if self.store.has(locked.sha256) and not getattr(resolver, "always_verify", False):
                obj = self.store.get(locked.sha256)
            else:
                try:
                    obj = resolver.fetch(spec.uri, self.store, locked.sha256)
                except ChecksumMismatch as err:
                    raise ChecksumMismatch(
                        f"input '{spec.name}' ({spec.uri}) against recipe.lock", err.expected, err.actual
                    ) from err
            inputs.append(FileEntry(spec.name, obj.sha256, obj.size, uri=spec.uri))
        code = self.store.add_bytes(codearchive.archive_bytes(recipe.directory))
        env = fixed_env(recipe)
        command = recipe.substituted_command()
        key = cache_key(lock.image_id, command, recipe.params, env, code.sha256,
                        {i.name: i.sha256 for i in inputs})
        return Prepared(recipe, lock, lock.image_id, code.sha256, inputs, env, command, key)

    # -- run ----------------------------------------------------------------------------------
    def run(self, recipe_dir: str | Path, force: bool = False) -> RunOutcome:
        prepared = self.prepare(recipe_dir)
        if not force:
            hit = self.cached(prepared.key)
            if hit is not None:
                return RunOutcome(hit, cache_hit=True)
        return self.execute(prepared)

    def cached(self, key: str) -> RunRecord | None:
        run_id = self.runs.cached_run(key)
        if run_id is None:
            return None
        try:
            record = self.runs.load(run_id)
        except ApplianceError:
            self.runs.forget(key)
            return None
        if record.state != "succeeded" or not all(self.store.has(o.sha256) for o in record.outputs):
            self.runs.forget(key)
            return None
        return record

    def _user(self) -> tuple[int, int]:
        if os.geteuid() == 0:
            return self.settings.run_uid, self.settings.run_gid
        return os.getuid(), os.getgid()

    def execute(self, p: Prepared, replay_of: str | None = None) -> RunOutcome:
        cores = os.cpu_count() or 1
        if p.recipe.cpus and p.recipe.cpus > cores:
            raise RecipeError(str(p.recipe.path), f"{p.recipe.cpus:g} CPUs asked, this machine has {cores}",
                              field="resources.cpus")
        if not self.runtime.has_image(p.image_id):
            raise ImageMissing(f"{p.recipe.directory / 'recipe.lock'}: image {p.image_id} is not on "
                               f"this engine ({self.runtime.name}); {RESTORE_ADVICE}; or `appliance lock "
                               f"{p.recipe.directory}` to pin this machine's image of '{p.recipe.image}'")
        run_id = new_run_id(p.recipe.name)
        uid, gid = self._user()
        record = RunRecord(
            run_id=run_id, state="running",
            recipe={"name": p.recipe.name, "directory": str(p.recipe.directory),
                    "definition": p.recipe.raw, "code_sha256": p.code_sha256},
            lock=p.lock.to_dict(), image={"ref": p.recipe.image, "image_id": p.image_id},
            runtime={}, host=host_facts(),
            container={"command": p.command, "env": p.env, "user": f"{uid}:{gid}", "network": "none",
                       "read_only_root": True, "cpus": p.recipe.cpus, "memory_bytes": p.recipe.memory_bytes,
                       "mounts": {"/input": "ro", "/recipe": "ro", "/output": "rw"}},
            cache_key=p.key, inputs=p.inputs, replay_of=replay_of,
        )
        run_dir = self.runs.run_dir(run_id)
        work = self.settings.home / "work" / run_id
        try:
            record.runtime = self.runtime.version()
            info = self.runtime.image_info(p.image_id)
            record.image["diff_ids"] = info.get("diff_ids", [])
            if info.get("converted_digest"):  # the runtime ran a converted copy (charliecloud)
                record.image["converted_digest"] = info["converted_digest"]
            self.runs.save(record)
            in_dir, out_dir, code_dir = work / "input", work / "output", work / "recipe"
            in_dir.mkdir(parents=True)
            for entry in p.inputs:
                target = in_dir / entry.name
                try:
                    os.link(self.store.path_of(entry.sha256), target)
                except OSError:
                    shutil.copyfile(self.store.path_of(entry.sha256), target)
            codearchive.extract(self.store.path_of(p.code_sha256), code_dir)
            out_dir.mkdir()
            if os.geteuid() == 0:
                os.chown(out_dir, uid, gid)
            for d in (work, in_dir):
                d.chmod(0o755)
            spec = ContainerSpec(
                image_id=p.image_id, command=p.command, env=p.env, user=f"{uid}:{gid}",
                mounts=[Mount(in_dir, "/input", True), Mount(code_dir, "/recipe", True),
                        Mount(out_dir, "/output", False)],
                cpus=p.recipe.cpus, memory_bytes=p.recipe.memory_bytes,
                labels={"org.appliance.run": run_id, "org.appliance.recipe": p.recipe.name},
            )
            with open(run_dir / "log.txt", "w") as logf, Heartbeat(
                    run_id, self.settings.heartbeat_seconds, self.on_log,
                    getattr(self.runtime, "usage", None)) as beat:
                def sink(line: str) -> None:
                    beat.seen()
                    logf.write(line + "\n")
                    self.on_log(line)

                try:
                    result = self.runtime.run(spec, sink)
                except RunFailed as err:
                    if err.run_id is not None:
                        raise
                    raise RunFailed(f"recipe {p.recipe.name}: {err}", run_id) from err
            record.exit_code, record.oom_killed = result.exit_code, result.oom_killed
            if result.oom_killed:
                limit = p.recipe.memory_bytes
                raise RunFailed(f"recipe {p.recipe.name}: the container was killed for running out of "
                                f"memory (limit {limit} bytes; raise resources.memory)", run_id)
            if result.exit_code != 0:
                tail = " | ".join(result.log_tail[-3:])
                raise RunFailed(f"recipe {p.recipe.name}: command exited with code {result.exit_code}"
                                + (f"; last output: {tail}" if tail else ""), run_id)
            record.outputs = self._collect(p.recipe, out_dir, run_id)
            record.state = "succeeded"
        except BaseException as err:
            record.state = "failed"
            record.error = str(err) if isinstance(err, ApplianceError) else f"{type(err).__name__}: {err}"
            raise
        finally:
            record.finished_at = utcnow()
            self.runs.save(record)
            with contextlib.suppress(OSError):
                shutil.rmtree(work)
        if replay_of is None:  # the cache points at original runs, never at their replays
            self.runs.remember(p.key, run_id)
        return RunOutcome(record)

    def _collect(self, recipe: Recipe, out_dir: Path, run_id: str) -> list[FileEntry]:
        declared = {o.path: o for o in recipe.outputs}
        found: dict[str, Path] = {}
        for path in sorted(out_dir.rglob("*")):
            rel = path.relative_to(out_dir).as_posix()
            if path.is_symlink():
                raise RunFailed(f"output {rel} is a symbolic link; outputs must be regular files", run_id)
            if path.is_file():
                found[rel] = path
        missing = [p for p in declared if p not in found]
        if missing:
            raise RunFailed(f"recipe {recipe.name}: declared output(s) missing in /output: {missing}", run_id)
        entries = []
        for rel, path in found.items():
            obj = self.store.add_file(path)
            spec = declared.get(rel)
            entries.append(FileEntry(rel, obj.sha256, obj.size,
                                     compare=spec.compare if spec else "sha256",
                                     options=dict(spec.options) if spec else {}))
        return entries


def check_recipe(recipe_dir: str | Path) -> Recipe:
    """Validate only (``appliance check``)."""
    return load_recipe(recipe_dir)


__all__ = ["InputError", "RecipeError", "RunOutcome", "Runner", "check_recipe", "fixed_env"]
