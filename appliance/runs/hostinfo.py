"""Facts about the host that ran an analysis, for the run record (provenance, not identity)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

from appliance import __version__


def cpu_facts() -> dict[str, object]:
    model, flags = "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model == "unknown":
                model = value.strip()
            elif key == "flags" and not flags:
                flags = sorted(value.split())
    except OSError:
        pass
    return {"model": model, "flags": flags}


def host_facts() -> dict[str, object]:
    uname = platform.uname()
    return {
        "kernel": f"{uname.system} {uname.release}",
        "kernel_version": uname.version,
        "machine": uname.machine,
        "cpu": cpu_facts(),
        "python": sys.version.split()[0],
        "appliance": __version__,
    }
