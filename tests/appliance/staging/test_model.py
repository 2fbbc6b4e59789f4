"""Tape REST answers as different servers write them (dCache uses onDisk, others use state)."""

from __future__ import annotations

from appliance.staging.model import (
    ArchiveInfo,
    Backoff,
    FileStage,
    StageStatus,
    path_of,
    server_root,
)


def test_file_items_read_like_gfal2():
    assert FileStage.from_json({"path": "/a", "onDisk": True}).online
    assert FileStage.from_json({"path": "/a", "onDisk": False}).state == "SUBMITTED"
    assert FileStage.from_json({"path": "/a", "state": "STARTED"}).finished is False
    failed = FileStage.from_json({"path": "/a", "onDisk": False, "error": "tape is broken"})
    assert failed.state == "FAILED" and failed.error == "tape is broken" and failed.finished
    assert FileStage.from_json({"path": "/a", "state": "CANCELED"}).state == "CANCELLED"
    assert FileStage.from_json({"path": "/a", "state": "WEIRD"}).finished  # terminal, like gfal2


def test_request_status_value():
    st = StageStatus.from_json({"id": "r1", "createdAt": 1, "startedAt": 2, "files": [
        {"path": "/a", "onDisk": True}, {"path": "/b", "state": "FAILED", "error": "lost"}]})
    assert st.done and not st.ok and st.online == ["/a"] and [f.path for f in st.failed] == ["/b"]
    assert "1 completed, 1 failed" in st.report() and st.to_json()["ok"] is False


def test_archiveinfo_and_urls():
    assert ArchiveInfo.from_json({"path": "/a", "locality": "TAPE"}).needs_stage
    assert ArchiveInfo.from_json({"path": "/a", "locality": "DISK_AND_TAPE"}).online
    assert not ArchiveInfo.from_json({"path": "/a", "locality": "LOST"}).online
    assert server_root("davs://h:8443/x/y") == "https://h:8443" and path_of("davs://h/x/y") == "/x/y"


def test_backoff_grows_to_a_ceiling():
    b = Backoff(initial=0.5, factor=2, maximum=3)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3, 3]
