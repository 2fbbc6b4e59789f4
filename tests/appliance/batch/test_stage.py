"""Batch staging plan: one stage request per server with every tape-resident item, before runs.
An in-memory staging client at the seam, beside the real archive server test (test_archive_batch.py)."""

from __future__ import annotations

from appliance.batch.stage import stage_all
from appliance.staging.errors import TapeApiUnavailable


class MemoryStagingClient:
    def __init__(self, server: str, calls: list, tape: bool = True):
        self.server, self.calls, self.tape = server, calls, tape

    def stage(self, paths, lifetime=None) -> str:
        if not self.tape:
            raise TapeApiUnavailable(self.server, "no Tape REST API")
        self.calls.append(("stage", self.server, list(paths)))
        return f"req-{len(self.calls)}"

    def wait(self, rid: str, timeout: float = 0) -> None:
        self.calls.append(("wait", self.server, rid))


def test_one_request_per_server_and_local_items_untouched() -> None:
    calls: list = []
    uris = ["davs://a:8443/p/X/1.fits", "/data/local.fits", "davs://a:8443/p/X/2.fits",
            "https://b:443/q/3.fits", "davs://disk:1/z.fits"]
    got = stage_all(uris, client_factory=lambda s: MemoryStagingClient(s, calls, tape="disk" not in s))
    stages = [c for c in calls if c[0] == "stage"]
    assert [(s, p) for _, s, p in stages] == [("https://a:8443", ["/p/X/1.fits", "/p/X/2.fits"]),
                                              ("https://b:443", ["/q/3.fits"])]
    assert [c[0] for c in calls] == ["stage", "wait", "stage", "wait"]  # each waited before runs
    assert set(got) == {"https://a:8443", "https://b:443"}  # davs is WebDAV over https


def test_release_deletes_each_request_and_reports_what_failed() -> None:
    from appliance.batch.stage import release_all
    from appliance.staging.errors import StagingError

    calls: list = []

    class Client(MemoryStagingClient):
        def delete(self, rid: str) -> None:
            if "b:" in self.server:
                raise StagingError(self.server, f"404 no request {rid}")
            self.calls.append(("delete", self.server, rid))

    problems = release_all({"https://a:8443": "r1", "https://b:443": "r2"},
                           client_factory=lambda s: Client(s, calls))
    assert calls == [("delete", "https://a:8443", "r1")]
    assert len(problems) == 1 and problems[0].startswith("https://b:443: stage request r2 not released")
