"""Replay a recorded run: same image ID, same input bytes, same recipe snapshot; then compare.

Everything is taken from the run record and the content-addressed store, not from the recipe
directory, so a replay works years later, on another machine, after ``appliance import``.
"""

from __future__ import annotations

from pathlib import Path

from appliance.compare.verdict import ReplayVerdict, compare_outputs
from appliance.errors import ImageMissing, InputError
from appliance.recipes.lock import RecipeLock
from appliance.recipes.model import Recipe
from appliance.runs.record import RunRecord
from appliance.runs.runner import Prepared, Runner


def prepared_from_record(runner: Runner, record: RunRecord) -> Prepared:
    for entry in record.inputs:
        if not runner.store.has(entry.sha256):
            raise InputError(f"input '{entry.name}' (sha256 {entry.sha256}) of run {record.run_id} is not "
                             f"in the store {runner.store.root}; import the run's bundle first")
    if not runner.store.has(record.recipe["code_sha256"]):
        raise InputError(f"the recipe snapshot of run {record.run_id} is not in the store; import its bundle")
    if not runner.runtime.has_image(record.image["image_id"]):
        raise ImageMissing(f"image {record.image['image_id']} of run {record.run_id} is not in the "
                           f"{runner.runtime.name} engine; `appliance import BUNDLE` loads it")
    d = record.recipe["definition"]
    c = record.container
    recipe = Recipe(
        directory=Path(record.recipe["directory"]), name=record.recipe["name"], image=record.image["ref"],
        command=list(d["command"]), inputs=[], params=dict(d.get("params") or {}), env=dict(d.get("env") or {}),
        outputs=[], cpus=c.get("cpus"), memory_bytes=c.get("memory_bytes"), seed=int(d.get("seed", 0)),
        source_date_epoch=int(c["env"]["SOURCE_DATE_EPOCH"]), raw=d,
    )
    return Prepared(
        recipe=recipe, lock=RecipeLock.from_dict(record.lock, f"run {record.run_id}"),
        image_id=record.image["image_id"], code_sha256=record.recipe["code_sha256"], inputs=record.inputs,
        env=dict(c["env"]), command=list(c["command"]), key=record.cache_key,
    )


# Runs that no recipe made are replayed by the code that made them (imported on use: the run layer
# does not depend on the pipeline), by the record's ``recipe.kind``.
STAGE_REPLAYERS = {"pipeline-stage": "appliance.pipeline.stagerun"}


def run_kind(record: RunRecord) -> str:
    """``recipe`` for recipe runs, else the record's ``recipe.kind`` (records of pipeline stages
    written before the field existed say ``runtime.name = host-process``)."""
    kind = record.recipe.get("kind")
    if kind is None and record.runtime.get("name") == "host-process":
        kind = "pipeline-stage"
    return str(kind or "recipe")


def replay(runner: Runner, run_id: str) -> tuple[ReplayVerdict, RunRecord]:
    original = runner.runs.load(run_id)
    module = STAGE_REPLAYERS.get(run_kind(original))
    if module is not None:
        import importlib

        return importlib.import_module(module).replay_stage(original.run_id, home=runner.settings.home)
    if original.state != "succeeded":
        raise InputError(f"run {original.run_id} did not succeed ({original.error}); nothing to replay")
    prepared = prepared_from_record(runner, original)
    outcome = runner.execute(prepared, replay_of=original.run_id)
    new = outcome.record
    expected = {o.name: (runner.store.path_of(o.sha256), o.compare or "sha256", o.options)
                for o in original.outputs}
    actual = {o.name: runner.store.path_of(o.sha256) for o in new.outputs}
    verdict = compare_outputs(expected, actual, original.run_id, new.run_id)
    new.verdict = verdict.to_dict()
    runner.runs.save(new)
    return verdict, new
