"""Write a run as a Workflow Run RO-Crate (https://w3id.org/ro/wfrun/workflow/0.5).

The recipe is the workflow (``mainEntity``), the run a ``CreateAction`` whose ``object`` are the
inputs and ``result`` the outputs, each file with its sha256; the container image is a
``ContainerImage`` identified by its image ID. The latest replay, if any, is a second
``CreateAction`` carrying the verdict.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from rocrate.model.computerlanguage import ComputerLanguage
from rocrate.model.contextentity import ContextEntity
from rocrate.rocrate import ROCrate

from appliance.runs.record import RunRecord, RunStore
from appliance.store import ContentStore

PROFILES = [
    {"@id": "https://w3id.org/ro/wfrun/process/0.5"},
    {"@id": "https://w3id.org/ro/wfrun/workflow/0.5"},
    {"@id": "https://w3id.org/workflowhub/workflow-ro-crate/1.0"},
]


def latest_replay(runs: RunStore, run_id: str) -> RunRecord | None:
    replays = [r for r in runs.list() if r.replay_of == run_id and r.verdict]
    return replays[-1] if replays else None


def export_rocrate(record: RunRecord, runs: RunStore, store: ContentStore, dest: Path) -> Path:
    crate = ROCrate()
    crate.name = f"Run {record.run_id} of recipe {record.recipe['name']}"
    crate.description = record.recipe["definition"].get("description", "appliance recipe run")
    crate.root_dataset["conformsTo"] = PROFILES
    for profile in PROFILES:
        crate.add(ContextEntity(crate, profile["@id"], properties={"@type": "CreativeWork", "name": profile["@id"]}))
    with tempfile.TemporaryDirectory() as tmp:
        recipe_yaml = Path(tmp) / "recipe.yaml"
        recipe_yaml.write_text(json.dumps(record.recipe["definition"], indent=2))
        lang = crate.add(ComputerLanguage(crate, "#appliance-recipe", properties={
            "name": "appliance recipe", "identifier": {"@id": "https://w3id.org/appliance/recipe"},
            "version": "1"}))
        workflow = crate.add_workflow(
            recipe_yaml, dest_path="recipe/recipe.yaml", main=True, lang=lang,
            properties={"name": record.recipe["name"], "sha256": record.recipe["code_sha256"],
                        "description": "appliance recipe (JSON form of recipe.yaml); code snapshot sha256 given"},
        )
        image = crate.add(ContextEntity(crate, "#image", properties={
            "@type": "ContainerImage", "name": record.image.get("ref"),
            "additionalType": {"@id": "https://w3id.org/ro/terms/workflow-run#DockerImage"},
            "sha256": record.image["image_id"].removeprefix("sha256:"),
            "identifier": record.image["image_id"],
        }))
        workflow["image"] = image

        def add_files(entries, prefix: str):  # type: ignore[no-untyped-def]
            out = []
            for e in entries:
                f = crate.add_file(store.path_of(e.sha256), dest_path=f"{prefix}/{e.name}",
                                   properties={"sha256": e.sha256, "contentSize": e.size,
                                               **({"url": e.uri} if e.uri else {})})
                out.append(f)
            return out

        inputs = add_files(record.inputs, "inputs")
        outputs = add_files(record.outputs, "outputs")
        env = [crate.add(ContextEntity(crate, f"#env-{k}", properties={"@type": "PropertyValue", "name": k, "value": v}))
               for k, v in sorted(record.container["env"].items())]
        action = crate.add_action(workflow, identifier=f"#run-{record.run_id}", object=inputs, result=outputs,
                                  properties={"name": f"run {record.run_id}", "startTime": record.started_at,
                                              "endTime": record.finished_at,
                                              "actionStatus": {"@id": "http://schema.org/CompletedActionStatus"
                                                               if record.state == "succeeded"
                                                               else "http://schema.org/FailedActionStatus"}})
        action["containerImage"] = image
        action["environment"] = env
        replay = latest_replay(runs, record.run_id)
        if replay is not None and replay.verdict:
            verdict = crate.add(ContextEntity(crate, "#replay-verdict", properties={
                "@type": "PropertyValue", "name": "replay verdict", "value": replay.verdict["status"],
                "description": json.dumps(replay.verdict)[:20000]}))
            crate.add_action(workflow, identifier=f"#replay-{replay.run_id}",
                             object=inputs, properties={"name": f"replay {replay.run_id} of {record.run_id}",
                                                        "startTime": replay.started_at, "endTime": replay.finished_at,
                                                        "description": f"replay verdict: {replay.verdict['status']}"})
            crate.get(f"#replay-{replay.run_id}")["result"] = verdict
        staging = dest.with_name(f".tmp-{dest.name}")
        if staging.exists():
            shutil.rmtree(staging)
        crate.write(staging)
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    return dest
