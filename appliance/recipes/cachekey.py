"""The cache key of a run: a pure function of everything that can change its outputs.

hash(image ID, command after substitution, params, environment, recipe code tree hash, input
checksums by mount name). Resources other than the thread counts (already in the environment)
do not enter: they change speed, not results.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_VERSION = 1


def cache_key(
    image_id: str, command: list[str], params: dict[str, Any], env: dict[str, str],
    code_sha256: str, inputs: dict[str, str],
) -> str:
    material = {
        "v": KEY_VERSION, "image_id": image_id, "command": command, "params": params,
        "env": env, "code_sha256": code_sha256, "inputs": inputs,
    }
    blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()
