"""Every execution of a pipeline stage is a run in the appliance's run store, with a run record.

The record is the one ``appliance run`` writes (``appliance.runs.record``, docs/RUN-RECORD.md), so
``appliance runs list|show|diff`` read it as any other run:

* ``inputs``: every file the stage read for the items it processed, by sha256 (``root/FOLDER/NAME``,
  ``work/products/ITEM.xml``, ...), with a ``file://`` URI; ``match``'s inputs are the archive's
  files by URL and the sha256 of the fetched bytes;
* ``recipe.definition``: the stage, its command and its params (the items processed, detectors,
  selection); ``recipe.code_sha256``: the ``appliance`` package as a deterministic tar in the
  content store (``runs diff`` names the files that changed);
* ``outputs``: everything the items wrote under the work area (``work/...``), the fetched files of
  ``match`` (``root/...``) and ``verdicts.json`` (every item's verdict, without timings, the root
  and work paths written as ``ROOT`` and ``WORK``), each stored by sha256 with its comparison policy;
* ``exit_code``: the stage's exit code (0, 5 failed items; match: 4 when every failed fetch failed on
  a checksum, 9 when any failed on a transfer or service error); ``state`` failed when
  it is not 0, with the first failure as ``error``; ``cache_key`` over the same parts as a recipe's.

Where the items run: in the locked ``stages`` image through a container runtime (``runtime``
docker, podman; ``appliance.pipeline.container``): ``image`` names that image by ID, ``runtime``
and ``container`` the engine and the container as a recipe run's record does. With ``runtime =
host`` they run in this process (``runtime.name = host-process``) and ``image.image_id`` is
``host-env:sha256:...`` over the Python and package versions and source-extractor's version,
listed in ``image.packages``. ``recipe.kind = pipeline-stage`` tells ``appliance replay`` to
hand the record to ``replay_stage``, which runs again in the image the record names.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config import Settings
from appliance.errors import ApplianceError, ChecksumMismatch, InputError
from appliance.hashing import sha256_file
from appliance.recipes.cachekey import cache_key
from appliance.runs import codearchive
from appliance.runs.hostinfo import host_facts
from appliance.runs.record import FileEntry, RunRecord, RunStore, new_run_id, utcnow
from appliance.store import ContentStore

RUNTIME = "host-process"
KIND = "pipeline-stage"  # recipe.kind: `appliance replay` hands these records to replay_stage
PACKAGES = ("numpy", "scipy", "astropy", "lxml", "xmlschema", "elementpath", "emcee", "AegeanTools", "tqdm", "requests")
# the variables that can change numerical results or text output of the stage's process
ENV_KEYS = ("TZ", "LC_ALL", "LANG", "PYTHONHASHSEED", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
            "MKL_NUM_THREADS", "SOURCE_DATE_EPOCH")
# comparison policies by suffix (docs/RECIPES.md): FITS by astropy's FITSDiff (DATE, CHECKSUM and
# DATASUM ignored), VOTable catalogs by table; XML and JSON are written deterministically, so byte
# equality. Catalog values come out of fits (Aegean's lmfit, emcee): a host and a container run of
# the same code and package versions on one machine differed by 1e-13 relative in flux_err (3 cells
# of 42; likely numpy's SIMD reductions, whose last bits follow memory alignment). Floats are
# compared at rtol 1e-9, far below any measured precision and far above that noise.
FLOAT_RTOL = 1e-9
POLICY = {".fits": "fits", ".xml": "sha256", ".vot": "votable", ".json": "sha256"}


@functools.cache
def environment() -> dict[str, str]:
    """Python, the Python packages the stages use, and source-extractor, by version."""
    import importlib.metadata as md

    env = {"python": sys.version.split()[0], "executable": sys.executable}
    for name in PACKAGES:
        try:
            env[name] = md.version(name)
        except md.PackageNotFoundError:
            env[name] = "absent"
    exe = shutil.which("source-extractor")
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10) if exe else None
        env["source-extractor"] = (out.stdout.strip() or out.stderr.strip()) if out else "absent"
    except (OSError, subprocess.SubprocessError) as e:
        env["source-extractor"] = f"unusable: {e}"
    return env


def environment_id(env: dict[str, str]) -> str:
    blob = json.dumps(env, sort_keys=True, separators=(",", ":")).encode()
    return "host-env:sha256:" + hashlib.sha256(blob).hexdigest()


def code_package() -> Path:
    import appliance

    return Path(appliance.__file__).parent


def process_env() -> dict[str, str]:
    return {k: os.environ[k] for k in ENV_KEYS if k in os.environ}


def policy(name: str) -> str:
    return POLICY.get(Path(name).suffix.lower(), "sha256")


def policy_options(pol: str) -> dict[str, Any]:
    return {"rtol": FLOAT_RTOL} if pol in ("fits", "votable") else {}


def normalise(text: str, root: Path, work: Path) -> str:
    """Reasons name files by absolute path; a replay runs elsewhere, so name the areas instead."""
    return text.replace(str(work), "WORK").replace(str(root), "ROOT")


@dataclass
class StageRun:
    """One execution of a stage: its record from the start (``running``) to the end."""

    stage: str
    root: Path
    work: Path
    command: list[str]
    params: dict[str, Any]
    parallel: int
    home: Path | None = None
    replay_of: str | None = None
    label: str | None = None  # the root as the outputs name it (a replay runs in another directory)
    runtime: str = "host"  # host: this process; else a container runtime (docker, podman, ...)
    job: dict[str, Any] = field(default_factory=dict)  # the stage's options the items need
    inputs: list[FileEntry] = field(default_factory=list)
    record: RunRecord | None = None
    t0: float = 0.0
    replay_image: tuple[str, dict[str, str]] | None = None  # a replay: the image ID and packages it ran in

    def __post_init__(self) -> None:
        settings = Settings.load(home=self.home)
        self.store = ContentStore(settings.store_root)
        self.runs = RunStore(settings.home)
        self.container = None
        self._stored: dict[str, tuple[int, int, Any]] = {}
        self._spec = None
        self._job_dir: Path | None = None
        if self.runtime != "host":  # resolve the image before anything is hashed: missing is exit 3
            from appliance.pipeline.container import StageContainer

            image_id, packages = self.replay_image or (None, None)
            self.container = StageContainer.prepare(self.runtime, self.home, image_id, packages)

    # -- inputs -------------------------------------------------------------------------------
    def add_input(self, name: str, path: Path) -> None:
        self.inputs.append(FileEntry(name, sha256_file(path), path.stat().st_size, uri=path.resolve().as_uri()))

    def add_stored(self, name: str, path: Path, uri: str) -> None:
        """An input whose bytes also become an output (match's fetched files): stored once, hashed
        once; ``finish`` reuses the object while the file's size and mtime are unchanged."""
        obj = self.store.add_file(path)
        st = path.stat()
        self._stored[str(path.resolve())] = (st.st_size, st.st_mtime_ns, obj)
        self.inputs.append(FileEntry(name, obj.sha256, obj.size, uri=uri))

    def _store(self, path: Path):  # noqa: ANN202 - StoredObject
        st = path.stat()
        hit = self._stored.get(str(path.resolve()))
        if hit is not None and hit[:2] == (st.st_size, st.st_mtime_ns):
            return hit[2]
        return self.store.add_file(path)

    def add_tree(self, prefix: str, base: Path, folder: str) -> None:
        """Every regular file of ``base/folder`` as ``prefix/folder/NAME``."""
        d = base / folder
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.is_file() and not p.name.startswith("."):
                    self.add_input(f"{prefix}/{folder}/{p.name}", p)

    # -- life cycle ---------------------------------------------------------------------------
    def _key(self, image_id: str, env: dict[str, str], code_sha256: str) -> str:
        return cache_key(image_id, self.command, self.params, env, code_sha256,
                         {i.name: i.sha256 for i in self.inputs})

    def begin(self) -> RunRecord:
        code = self.store.add_bytes(codearchive.archive_bytes(code_package()))
        penv = process_env()
        if self.container is not None:
            from appliance.pipeline.container import job_area

            self._job_dir = job_area()
            self._spec = self.container.spec(self.root, self.work, self._job_dir, self.parallel, penv)
            image, runtime, container = self.container.record_fields(self._spec)
            penv = dict(self._spec.env)
        else:
            env = environment()
            image = {"ref": RUNTIME, "image_id": environment_id(env), "packages": env}
            runtime = {"name": RUNTIME, "executable": sys.executable, "pid": os.getpid(),
                       "note": "the stage ran in this host process, not in a container (`--runtime` "
                               "names one: the locked `stages` image)"}
            container = {"command": self.command, "env": penv, "user": f"{os.getuid()}:{os.getgid()}",
                         "network": "host", "read_only_root": False, "cpus": self.parallel,
                         "memory_bytes": None, "mounts": {str(self.root): "root", str(self.work): "work"}}
        key = self._key(image["image_id"], penv, code.sha256)
        self.record = RunRecord(
            run_id=new_run_id(f"pipeline-{self.stage}"), state="running",
            recipe={"name": f"pipeline-{self.stage}", "kind": KIND, "directory": str(self.work),
                    "definition": {"stage": self.stage, "command": self.command, "params": self.params,
                                   "root": self.label or str(self.root), "work": str(self.work)},
                    "code_sha256": code.sha256, "code_directory": str(code_package())},
            lock={}, image=image, runtime=runtime, host=host_facts(), container=container,
            cache_key=key, inputs=self.inputs, replay_of=self.replay_of,
        )
        self.t0 = time.perf_counter()
        self.runs.save(self.record)
        return self.record

    def executor(self):  # noqa: ANN201 - runner.Executor | None
        """Where the planned items run: ``None`` (this process) or the stage's container."""
        if self.container is None:
            return None

        def run_in_container(todo: list[str], on_item) -> str | None:  # noqa: ANN001
            assert self.record is not None and self._spec is not None
            job = {"stage": self.stage, "items": todo, "parallel": self.parallel,
                   "options": {"root": str(self.root), "work": str(self.work), **self.job}}
            return self.container.execute(self._spec, self.store.path_of(self.record.recipe["code_sha256"]),
                                          job, on_item)

        return run_in_container

    def _cleanup(self) -> None:
        if self._job_dir is not None:
            shutil.rmtree(self._job_dir, ignore_errors=True)
            self._job_dir = None

    def finish(self, outputs: dict[str, tuple[Path, str]], verdicts: list[dict[str, Any]],
               exit_code: int, error: str | None = None) -> RunRecord:
        """``outputs``: name -> (file, policy). ``verdicts`` become the ``verdicts.json`` output."""
        self._cleanup()
        r = self.record
        assert r is not None
        entries = []
        for name, (path, pol) in sorted(outputs.items()):
            obj = self._store(path)
            entries.append(FileEntry(name, obj.sha256, obj.size, compare=pol, options=policy_options(pol)))
        blob = json.dumps(verdicts, indent=1, sort_keys=True).encode() + b"\n"
        obj = self.store.add_bytes(blob)
        entries.append(FileEntry("verdicts.json", obj.sha256, obj.size, compare="sha256"))
        r.outputs = sorted(entries, key=lambda e: e.name)
        r.inputs = self.inputs
        # the key covers what the stage learnt while it ran (match: the bytes it fetched and the
        # folders it found); for a stage that knew its inputs and params at begin() it is begin's key
        r.cache_key = self._key(r.image["image_id"], r.container["env"], r.recipe["code_sha256"])
        r.exit_code, r.error = exit_code, error
        r.state = "succeeded" if exit_code == 0 else "failed"
        r.finished_at = utcnow()
        r.runtime["seconds"] = round(time.perf_counter() - self.t0, 3)
        self.runs.save(r)
        return r

    def abort(self, err: BaseException) -> None:
        """The stage raised: the record says so (as ``appliance run`` does), then the error goes on."""
        self._cleanup()
        r = self.record
        if r is None:
            return
        r.state = "failed"
        r.error = str(err) if isinstance(err, ApplianceError) else f"{type(err).__name__}: {err}"
        r.exit_code = int(getattr(err, "exit_code", 1))
        r.finished_at = utcnow()
        self.runs.save(r)

    # -- the verdicts -------------------------------------------------------------------------
    def verdicts(self, items: Iterable[Any], ran: Iterable[str]) -> list[dict[str, Any]]:
        """The verdicts of the items this run processed, comparable across machines and replays."""
        ran = set(ran)
        root = Path(self.root)
        return [{"id": st.id, "status": st.status, "reason": normalise(st.reason, root, Path(self.work))}
                for st in items if st.id in ran]


def first_failure(summary: Any) -> str | None:
    bad = [i for i in summary.items if i.status == "failed"]
    return f"{len(bad)} item(s) failed; first {bad[0].id}: {bad[0].reason}" if bad else None


def recorded(run: StageRun, body: Callable[[StageRun], Any]) -> Any:
    """Run ``body`` (which calls ``run.begin()`` once its inputs are known and ``run.finish``);
    an exception on the way marks the record failed."""
    try:
        return body(run)
    except BaseException as err:
        run.abort(err)
        raise


# -- replay ---------------------------------------------------------------------------------------

def materialise(store: ContentStore, record: RunRecord, dest: Path) -> None:
    """Each input at ``dest/NAME``: from the content store when it is there, else from its URI,
    whose bytes must still have the recorded sha256 (the archive's files are not copied into the
    store; a changed file is refused, exit 4)."""
    from urllib.parse import unquote, urlparse

    for entry in record.inputs:
        target = dest / entry.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if store.has(entry.sha256):
            store.export(entry.sha256, target)
            continue
        uri = urlparse(entry.uri or "")
        if uri.scheme != "file":
            raise InputError(f"input '{entry.name}' of run {record.run_id} is not in the store "
                             f"and cannot be read from {entry.uri!r}")
        src = Path(unquote(uri.path))
        if not src.is_file():
            raise InputError(f"input '{entry.name}' of run {record.run_id}: {src} is gone "
                             "(and not in the store)")
        got = sha256_file(src)
        if got != entry.sha256:
            raise ChecksumMismatch(f"input '{entry.name}' of run {record.run_id} ({src})", entry.sha256, got)
        shutil.copyfile(src, target)


def replay_stage(run_id: str, home: Path | None = None):  # noqa: ANN201 - (ReplayVerdict, RunRecord)
    """Run the stage of ``run_id`` again on the recorded input bytes with the recorded params in a
    fresh area, record the replay (``replay_of``) and compare every output by its recorded policy."""
    from appliance.compare.verdict import compare_outputs
    from appliance.runs.replay import run_kind

    settings = Settings.load(home=home)
    store, runs = ContentStore(settings.store_root), RunStore(settings.home)
    original = runs.load(run_id)
    if run_kind(original) != KIND:
        raise InputError(f"run {original.run_id} is not a pipeline stage run; use `appliance replay`")
    if original.state != "succeeded":
        raise InputError(f"run {original.run_id} did not succeed ({original.error}); nothing to replay")
    d = original.recipe["definition"]
    area = settings.home / "work" / f"replay-{original.run_id}"
    shutil.rmtree(area, ignore_errors=True)
    try:
        if d["stage"] != "match":  # match's inputs are the archive's files: it fetches them again
            materialise(store, original, area)
        root, work = area / "root", area / "work"
        root.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        new = _rerun(d["stage"], root, work, d["params"], original, settings.home, d.get("root"))
    finally:
        shutil.rmtree(area, ignore_errors=True)
    expected = {o.name: (store.path_of(o.sha256), o.compare or "sha256", o.options) for o in original.outputs}
    actual = {o.name: store.path_of(o.sha256) for o in new.outputs}
    verdict = compare_outputs(expected, actual, original.run_id, new.run_id)
    new.verdict = verdict.to_dict()
    runs.save(new)
    return verdict, new


def _rerun(stage: str, root: Path, work: Path, params: dict[str, Any], original: RunRecord,
           home: Path, label: str | None) -> RunRecord:
    from appliance.pipeline import stages

    common: dict[str, Any] = {"parallel": int(original.container.get("cpus") or 1), "resume": False,
                              "progress": False, "home": home, "replay_of": original.run_id, "label": label}
    if original.runtime.get("name") not in (None, RUNTIME):  # in the image it ran in, by ID
        common["runtime"] = original.runtime["name"]
        common["replay_image"] = (original.image["image_id"], original.image.get("packages") or {})
    folders = list(params.get("folders") or [])
    for f in folders:  # an empty folder has no input file to bring it back
        (root / f).mkdir(parents=True, exist_ok=True)
    if stage == "products":
        summary, _ = stages.run_products(root, work, folders=folders, **common)
    elif stage == "image":
        summary, _ = stages.run_image(root, work, detectors=tuple(params["detectors"]), folders=folders,
                                      **common)
    elif stage == "match":
        from appliance.pipeline.match import Selection, run_match

        sel = Selection(**{k: (tuple(v) if k == "cone" and v else v) for k, v in params["selection"].items()})
        summary, _ = run_match(params["url"], root, work, params["prefix"], sel, folders=folders, **common)
    else:
        raise InputError(f"run {original.run_id}: unknown pipeline stage {stage!r}")
    return RunStore(home).load(summary.run_id)
