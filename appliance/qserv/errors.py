"""Error types of the Qserv tools; each names the file, column, chunk or URL at fault."""

from __future__ import annotations

from appliance.errors import ApplianceError, ConfigError, InputError
from appliance.exitcodes import Exit


class PartitionConfigError(ConfigError):
    """Partitioning parameters Qserv itself would reject (e.g. overlap wider than a sub-stripe)."""


class CatalogError(InputError):
    """An input catalog cannot be read or lacks a required column."""

    def __init__(self, path: str, message: str, column: str | None = None, details: dict | None = None):
        self.path, self.column, self.message = path, column, message
        self.details = details or {}  # machine-readable facts (row, value, count, missing), for --json
        what = f" column '{column}':" if column else ""
        super().__init__(f"{path}:{what} {message}")

    def to_json(self) -> dict:
        return {"path": self.path, "column": self.column, "message": self.message, **self.details}


class MissingColumnsError(CatalogError):
    """A table lacks columns the next step needs (e.g. the director's positions): a usage error."""

    exit_code = Exit.USAGE


class SchemaError(ApplianceError):
    """A Felis schema failed validation; ``errors`` lists the validator's messages."""

    exit_code = Exit.USAGE

    def __init__(self, path: str, errors: list[str]):
        self.path, self.errors = path, errors
        super().__init__(f"{path}: invalid Felis schema: " + "; ".join(errors[:5]))


class DatabaseError(ApplianceError):
    """A database (MariaDB) operation failed; the message names the table or statement."""

    exit_code = Exit.REMOTE


class IngestError(ApplianceError):
    """The Qserv ingest REST API answered with an error; carries the URL and the server's text."""

    exit_code = Exit.REMOTE

    def __init__(self, url: str, message: str):
        self.url = url
        super().__init__(f"{url}: {message}")
