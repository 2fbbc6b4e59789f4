"""Batch staging plan: one stage request per server with every tape-resident item, before runs.
An in-memory staging client at the seam (the real Tape REST path is tested in tests/appliance/staging)."""

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
