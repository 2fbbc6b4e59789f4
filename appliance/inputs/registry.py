"""Pick the input resolver for a URI by its scheme.

Local files are always available; network and archive resolvers (``appliance.inputs.remote``)
register their schemes when that module is present.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from urllib.parse import urlparse

from appliance.config import Settings
from appliance.errors import InputError
from appliance.inputs.base import InputResolver
from appliance.inputs.local import LocalFileResolver


class ResolverRegistry:
    def __init__(self, settings: Settings, base_dir: Path):
        self._settings = settings
        self._remote_loaded = False
        self._by_scheme: dict[str, InputResolver] = {}
        self.add(LocalFileResolver(base_dir))

    def add(self, resolver: InputResolver) -> None:
        for scheme in resolver.schemes:
            self._by_scheme[scheme] = resolver

    def _load_remote(self) -> None:
        """Network resolvers are imported only when a URI needs them (keeps local runs fast)."""
        self._remote_loaded = True
        if importlib.util.find_spec("appliance.inputs.remote") is not None:
            from appliance.inputs import remote

            for resolver in remote.remote_resolvers(self._settings.resolvers):
                self.add(resolver)

    def for_uri(self, uri: str) -> InputResolver:
        scheme = urlparse(uri).scheme
        if len(scheme) == 1:  # a Windows-like drive letter is not a scheme
            scheme = ""
        if scheme not in self._by_scheme and not self._remote_loaded:
            self._load_remote()
        if scheme not in self._by_scheme:
            known = ", ".join(sorted(s + "://" for s in self._by_scheme if s)) + ", local paths"
            raise InputError(f"input {uri}: no resolver for scheme '{scheme}://' (known: {known})")
        return self._by_scheme[scheme]
