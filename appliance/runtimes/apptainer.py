"""Apptainer runtime: DESIGNED, UNPROVEN. Apptainer is not installable on this project's machines
(not in Debian 12), so no test has ever run this file against a real ``apptainer``.

The design mirrors the charliecloud runtime: the SIF is built from the same ``docker save`` tar
(``apptainer build IMG.sif docker-archive:TAR``) into a cache keyed by image ID, and the SIF's
sha256 is the converted digest recorded next to the image ID. Runs use ``apptainer exec
--containall --cleanenv --no-home --net --network none`` (an unshared network namespace needs
``--userns`` or a setuid install), binds ``SRC:DST:ro`` for inputs and the recipe and ``rw`` for
/output; the SIF itself is read-only. Limits: ``--cpus``/``--memory`` need cgroups v2 delegation,
which a user without systemd does not have; like charliecloud, treat them as not enforced.
"""

from __future__ import annotations

import collections
import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.errors import EngineUnavailable, ImageMissing
from appliance.runtimes.base import ContainerResult, ContainerSpec
from appliance.runtimes.charliecloud import read_archive_config


class ApptainerRuntime:
    name = "apptainer"

    def __init__(self, cache_dir: Path, binary: str | None = None):
        found = binary or shutil.which("apptainer") or shutil.which("singularity")
        if not found:
            raise EngineUnavailable("apptainer is not installed; this runtime is designed but unproven "
                                    "(docs/RECIPES.md); use --runtime charliecloud without root")
        self.binary, self.cache_dir = found, cache_dir

    def _sif(self, image_id: str) -> Path:
        return self.cache_dir / f"{image_id.removeprefix('sha256:')}.sif"

    def version(self) -> dict[str, str]:
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout.strip()
        return {"runtime": "apptainer", "engine": out or "?"}

    def has_image(self, image_id: str) -> bool:
        return self._sif(image_id).is_file()

    def image_info(self, image_id: str) -> dict[str, object]:
        meta = self._sif(image_id).with_suffix(".json")
        if not meta.is_file():
            raise ImageMissing(f"image {image_id} is not in the apptainer cache {self.cache_dir}")
        return json.loads(meta.read_text())  # type: ignore[no-any-return]

    def load_image(self, src: Path) -> list[str]:
        image_id, config, _ = read_archive_config(src)
        sif = self._sif(image_id)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = sif.with_suffix(".sif.part")
        proc = subprocess.run([self.binary, "build", "--force", str(tmp), f"docker-archive:{src}"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise ImageMissing(f"apptainer build from {src}: {proc.stderr.strip()[-300:]}")
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        tmp.rename(sif)
        sif.with_suffix(".json").write_text(json.dumps({
            "id": image_id, "diff_ids": config.get("rootfs", {}).get("diff_ids", []), "tags": [],
            "converted_digest": f"sha256:{digest}"}))
        return [image_id]

    def run(self, spec: ContainerSpec, on_log: Callable[[str], None]) -> ContainerResult:
        cmd: list[Any] = [self.binary, "exec", "--containall", "--cleanenv", "--no-home", "--userns",
                          "--net", "--network", "none", "--pwd", spec.workdir]
        for m in spec.mounts:
            cmd += ["--bind", f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}"]
        for k, v in spec.env.items():
            cmd += ["--env", f"{k}={v}"]
        cmd += [str(self._sif(spec.image_id)), *spec.command]
        tail: collections.deque[str] = collections.deque(maxlen=50)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
            assert p.stdout is not None
            for line in p.stdout:
                tail.append(line.rstrip("\n"))
                on_log(tail[-1])
            code = p.wait()
        return ContainerResult(code, False, started, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               list(tail))

    def save_image(self, image_id: str, dest: Path) -> None:
        raise ImageMissing("apptainer keeps SIFs only; save the image from the docker-archive tar it came from")

    def remove_image(self, image_id: str) -> None:
        for p in (self._sif(image_id), self._sif(image_id).with_suffix(".json")):
            p.unlink(missing_ok=True)


def create(settings: Any = None) -> ApptainerRuntime:
    if settings is None:
        from appliance.config import Settings

        settings = Settings.load()
    return ApptainerRuntime(Path(settings.image_store) / "apptainer")
