"""Client for Qserv's ingest REST API (the Replication Controller and the workers' HTTP ingest).

Workflow, as Qserv's documentation (doc/ingest/api) describes it:

1. ``POST /ingest/database``   register the database with the partitioning parameters;
2. ``POST /ingest/table``      register each table (director: ``director_key``, ``longitude_key``,
   ``latitude_key``; child: ``director_table`` + ``director_key``), with its MySQL column types;
3. ``POST /ingest/trans``      start a super-transaction, get its id;
4. ``POST /ingest/chunk``      allocate each chunk; the answer names the worker (``http_host``,
   ``http_host_name``, ``http_port``) that takes it;
5. ``POST http://<worker>:<http_port>/ingest/csv`` (multipart: ``transaction_id``, ``table``,
   ``chunk``, ``overlap``, ``fields_terminated_by``, ``file``) upload each chunk file;
6. ``PUT /ingest/trans/<id>?abort=0``  commit (``abort=1`` on failure);
7. ``PUT /ingest/database/<db>``       publish.

Every answer is JSON with ``success`` (1/0) and ``error``; ``success != 1`` raises ``IngestError``.

Honest limits: there is no Qserv cluster here, so this client has never talked to a real Replication
Controller in this project's tests. The tests check the requests it builds against a local
recording HTTP server (``tests/appliance/qserv/test_ingest.py``), nothing more.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import requests

from appliance.qserv.errors import IngestError
from appliance.qserv.felis_schema import CatalogSchema, TableSchema
from appliance.qserv.partition import read_summary


def table_config(schema: CatalogSchema, table: TableSchema, database: str) -> dict:
    """The ``POST /ingest/table`` body for one table (pure)."""
    cols = [{"name": c.name, "type": c.mysql_type() + ("" if c.nullable else " NOT NULL")} for c in table.columns]
    cols += [{"name": "chunkId", "type": "INT NOT NULL"}, {"name": "subChunkId", "type": "INT NOT NULL"}]
    body: dict = {"database": database, "table": table.name, "is_partitioned": 1, "schema": cols}
    if table.is_director:
        body.update(
            director_table="",
            director_key=table.primary_key,
            longitude_key=table.ra,
            latitude_key=table.dec,
            unique_primary_key=1,
        )
    else:
        body.update(director_table=table.director, director_key=table.director_key, longitude_key=table.ra or "", latitude_key=table.dec or "")
    return body


def database_config(database: str, partition_config: dict) -> dict:
    return {
        "database": database,
        "num_stripes": int(partition_config["num_stripes"]),
        "num_sub_stripes": int(partition_config["num_sub_stripes"]),
        "overlap": float(partition_config["overlap"]),
        "auto_build_secondary_index": 1,
    }


@dataclass
class IngestPlan:
    """Everything ``ingest`` would send, computed without a server (``--dry-run`` prints it)."""

    database: dict
    tables: list[dict]
    uploads: list[dict] = field(default_factory=list)  # {table, chunk, overlap, path}
    ok = True  # a plan is always well-formed; the server decides the rest

    def to_json(self) -> dict:
        return {"ok": True, "database": self.database, "tables": self.tables, "uploads": self.uploads}

    def report(self) -> str:
        chunks = {u["chunk"] for u in self.uploads}
        return (
            f"database {self.database['database']}: {len(self.tables)} table(s), "
            f"{len(self.uploads)} file(s) in {len(chunks)} chunk(s)"
        )


def build_plan(schema: CatalogSchema, partition_dir: str | Path, database: str | None = None) -> IngestPlan:
    database = database or schema.database
    director = schema.director()
    summary = read_summary(Path(partition_dir) / director.name)
    plan = IngestPlan(database_config(database, summary.config), [table_config(schema, t, database) for t in schema.tables])
    for t in schema.tables:
        for path in sorted(Path(partition_dir, t.name).glob("chunk_*.txt")):
            m = re.match(r"^chunk_(\d+)(_overlap)?\.txt$", path.name)
            if m:
                plan.uploads.append({"table": t.name, "chunk": int(m.group(1)), "overlap": int(bool(m.group(2))), "path": str(path)})
    return plan


class IngestClient:
    """Thin, explicit wrapper of the REST calls; one method per endpoint."""

    def __init__(self, base_url: str, auth_key_env: str = "QSERV_AUTH_KEY", version: int | None = None, timeout: float = 300.0):
        self.base = base_url.rstrip("/")
        self.auth_key = os.environ.get(auth_key_env, "")
        self.version = version
        self.timeout = timeout
        self.session = requests.Session()

    def _check(self, url: str, resp: requests.Response) -> dict:
        try:
            body = resp.json()
        except ValueError as err:
            raise IngestError(url, f"HTTP {resp.status_code}, not JSON: {resp.text[:200]}") from err
        if resp.status_code >= 400 or body.get("success") != 1:
            raise IngestError(url, f"HTTP {resp.status_code}: {body.get('error') or 'success != 1'}")
        return body

    def _call(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> dict:
        url = self.base + path
        payload = dict(body or {})
        payload["auth_key"] = self.auth_key
        if self.version is not None:
            payload["version"] = self.version
        try:
            resp = self.session.request(method, url, json=payload, params=params, timeout=self.timeout)
        except requests.RequestException as err:
            raise IngestError(url, str(err)) from err
        return self._check(url, resp)

    def register_database(self, config: dict) -> dict:
        return self._call("POST", "/ingest/database", config)

    def register_table(self, config: dict) -> dict:
        return self._call("POST", "/ingest/table", config)

    def start_transaction(self, database: str) -> int:
        body = self._call("POST", "/ingest/trans", {"database": database})
        try:
            return int(body["databases"][database]["transactions"][0]["id"])
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise IngestError(self.base + "/ingest/trans", "no transaction id in the answer") from err

    def allocate_chunk(self, transaction_id: int, chunk: int) -> dict:
        body = self._call("POST", "/ingest/chunk", {"transaction_id": transaction_id, "chunk": chunk})
        if "location" not in body:
            raise IngestError(self.base + "/ingest/chunk", f"no worker location for chunk {chunk}")
        return body["location"]

    def upload_csv(self, location: dict, transaction_id: int, table: str, chunk: int, overlap: bool, path: str | Path) -> dict:
        host = location.get("http_host_name") or location.get("http_host")
        url = f"http://{host}:{location['http_port']}/ingest/csv"
        fields = {
            "transaction_id": str(transaction_id),
            "table": table,
            "chunk": str(chunk),
            "overlap": "1" if overlap else "0",
            "fields_terminated_by": ",",
            "auth_key": self.auth_key,
        }
        try:
            with open(path, "rb") as fh:
                resp = self.session.post(url, data=fields, files={"file": (Path(path).name, fh, "text/csv")}, timeout=self.timeout)
        except requests.RequestException as err:
            raise IngestError(url, str(err)) from err
        return self._check(url, resp)

    def end_transaction(self, transaction_id: int, abort: bool = False) -> dict:
        return self._call("PUT", f"/ingest/trans/{transaction_id}", params={"abort": int(abort)})

    def publish(self, database: str) -> dict:
        return self._call("PUT", f"/ingest/database/{database}")


def run_ingest(client: IngestClient, plan: IngestPlan, publish: bool = True, progress: bool = False) -> dict:
    """Execute a plan; on any failure the transaction is aborted and the error re-raised."""
    from tqdm import tqdm

    client.register_database(plan.database)
    for t in plan.tables:
        client.register_table(t)
    db = plan.database["database"]
    tid = client.start_transaction(db)
    locations: dict[int, dict] = {}
    try:
        for u in tqdm(plan.uploads, desc="ingest", unit="file", disable=not progress):
            if u["chunk"] not in locations:
                locations[u["chunk"]] = client.allocate_chunk(tid, u["chunk"])
            client.upload_csv(locations[u["chunk"]], tid, u["table"], u["chunk"], bool(u["overlap"]), u["path"])
    except BaseException:
        client.end_transaction(tid, abort=True)
        raise
    client.end_transaction(tid, abort=False)
    if publish:
        client.publish(db)
    return {"ok": True, "transaction_id": tid, "chunks": len(locations), "files": len(plan.uploads)}
