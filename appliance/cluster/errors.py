"""Errors of the cluster commands, each naming the inventory, host or run at fault."""

from __future__ import annotations

from appliance.errors import ApplianceError, ConfigError
from appliance.exitcodes import Exit


class InventoryError(ConfigError):
    """An inventory that cannot be read or lacks what a command needs (exit code 2)."""


class ProvisionFailed(ApplianceError):
    """``site.yml`` failed on at least one host; the artifacts directory has the full log."""

    exit_code = Exit.REMOTE

    def __init__(self, message: str, artifacts: str) -> None:
        super().__init__(f"{message} (ansible-runner artifacts: {artifacts})")
        self.artifacts = artifacts


class NodeCommandFailed(ApplianceError):
    """An ad-hoc command failed (or a node was unreachable) on at least one node."""

    exit_code = Exit.REMOTE
