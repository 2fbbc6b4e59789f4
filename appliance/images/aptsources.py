"""This host's Debian mirror, read from its apt sources at build time.

The repository never names a package registry: builds use whatever mirror the machine is set up
with. Both the one-line (``sources.list``) and deb822 (``*.sources``) formats are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ConfigError


@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str
    components: tuple[str, ...]

    def line(self) -> str:
        return f"deb {self.uri} {self.suite} {' '.join(self.components)}"


def parse_one_line(text: str) -> list[AptSource]:
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        parts = line.split()[1:]
        if parts and parts[0].startswith("["):  # options like [signed-by=...]
            while parts and not parts[0].endswith("]"):
                parts.pop(0)
            parts.pop(0)
        if len(parts) >= 3:
            out.append(AptSource(parts[0], parts[1], tuple(parts[2:])))
    return out


def parse_deb822(text: str) -> list[AptSource]:
    out = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                out.append(AptSource(uri, suite, tuple(fields.get("components", "").split())))
    return out


def host_sources(root: Path = Path("/etc/apt")) -> list[AptSource]:
    sources: list[AptSource] = []
    main = root / "sources.list"
    if main.is_file():
        sources += parse_one_line(main.read_text())
    d = root / "sources.list.d"
    if d.is_dir():
        for f in sorted(d.iterdir()):
            if f.suffix == ".list":
                sources += parse_one_line(f.read_text())
            elif f.suffix == ".sources":
                sources += parse_deb822(f.read_text())
    return sources


def debian_sources_for(suite: str, components: tuple[str, ...], root: Path = Path("/etc/apt")) -> list[AptSource]:
    """The host's entries for ``suite`` and its -updates/-security suites, with our components."""
    wanted = {suite, f"{suite}-updates", f"{suite}-security"}
    chosen = [
        AptSource(s.uri, s.suite, tuple(c for c in components if c in s.components) or components)
        for s in host_sources(root)
        if s.suite in wanted
    ]
    if not any(s.suite == suite for s in chosen):
        raise ConfigError(
            f"/etc/apt: no apt source for suite '{suite}' on this host; the image build takes its "
            "mirror from the host's apt sources"
        )
    seen: set[tuple[str, str]] = set()
    unique = []
    for s in chosen:
        if (s.uri, s.suite) not in seen:
            seen.add((s.uri, s.suite))
            unique.append(s)
    return unique
