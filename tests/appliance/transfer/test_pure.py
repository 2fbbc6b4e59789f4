"""Pure parts of the transfer package: checksum names and headers, backoff, results."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest

from appliance.errors import ChecksumMismatch
from appliance.transfer.checksum import parse_digest_header, parse_expected
from appliance.transfer.errors import NotFound, TransferError
from appliance.transfer.result import BulkResult, TransferResult
from appliance.transfer.retry import RetryPolicy, is_transient
from appliance.transfer.select import Backends, scheme_of


def test_parse_expected_normalises():
    assert parse_expected("ADLER32:1A2B") == ("adler32", "00001a2b")
    assert parse_expected("sha-256:ABCD") == ("sha256", "abcd")
    with pytest.raises(ValueError):
        parse_expected("crc99:1")
    with pytest.raises(ValueError):
        parse_expected("adler32")


def test_digest_header_adler32_and_base64_sha256():
    raw = hashlib.sha256(b"x").digest()
    header = f"adler32=0a0b0c0d, sha-256={base64.b64encode(raw).decode()}"
    assert parse_digest_header(header, "adler32") == "0a0b0c0d"
    assert parse_digest_header(header, "sha256") == raw.hex()
    assert parse_digest_header("md5=abc", "adler32") is None
    assert parse_digest_header(None, "adler32") is None


def test_backoff_grows_and_is_bounded():
    delays = list(RetryPolicy(attempts=5, initial=1, factor=2, maximum=5, jitter=0).delays())
    assert delays == [1, 2, 4, 5]
    jittered = list(RetryPolicy(attempts=3, initial=10, jitter=0.1).delays(random.Random(1)))
    assert all(9 <= d <= 22 for d in jittered) and len(jittered) == 2


def test_transient_classification():
    assert is_transient(TransferError("u", "refused", transient=True))
    assert not is_transient(NotFound("u"))
    assert is_transient(ChecksumMismatch("u", "a", "b"))
    assert not is_transient(ValueError("x"))


def test_results_are_values():
    ok = TransferResult("a", "b", ok=True, size=10, seconds=1, checksum_type="adler32",
                        source_checksum="00000001", dest_checksum="00000001", attempts=1)
    bad = TransferResult("c", "d", ok=False, error="boom", exit_code=7)
    bulk = BulkResult([ok, bad], 1.0)
    assert ok.verified and "verified" in ok.report()
    assert not bulk.ok and bulk.exit_code == 7 and "1/2 files OK" in bulk.report()
    assert bulk.to_json()["files"][1]["error"] == "boom"


def test_backend_selection_by_scheme():
    b = Backends()
    assert b.name_for("/tmp/x") == "local" and b.name_for("file:///tmp/x") == "local"
    assert b.name_for("gsiftp://h/x") == "gfal2"
    assert b.name_for("davs://h/x") in ("gfal2", "http")
    assert Backends(prefer={"davs": "http"}).name_for("davs://h/x") == "http"
    assert scheme_of("C:/x") == ""
