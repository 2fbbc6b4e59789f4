"""The tape library simulator: cartridges as append-only files, drives with a time model.

A real tape library cannot exist on this machine, so this is a simulator (named so). What it
keeps from the real thing is what the rest of the archive must cope with:

* Cartridges are append-only and self-describing: each record is a header (JSON: path, size,
  checksums, owner, times, metadata, a global sequence number) followed by the data and an end
  marker, so ``archive catalog rebuild`` can reconstruct the whole catalog from the tapes alone.
  A record cut short by a crash has no end marker: it is ignored by scans and overwritten by the
  next append.
* Drives cost time: mount and unmount (default 60 s each), locate proportional to the distance
  on tape, read and write at a streaming rate (default 360 MB/s, LTO-9 class). The simulator only
  computes durations; the engine advances its clock (real, sped-up or simulated) by them.

Positions: ``offset`` is the byte offset of a record in the cartridge file; ``block`` is
``offset // BLOCK``; ``fseq`` is the record's index on the cartridge.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from appliance.hashing import adler32, adler32_hex
from archive.config import TapeConfig
from archive.errors import ChecksumError, TapeError

MAGIC = b"LTAREC01"
END = b"LTAEND01"
BLOCK = 256 * 1024
CHUNK = 1 << 20
POOL_LETTERS = "ABCD"


@dataclass
class Cartridge:
    tape: str
    pool: str
    path: Path
    used: int = 0  # bytes of complete records
    records: int = 0
    capacity: int = 0

    @property
    def full(self) -> bool:
        return self.used >= self.capacity


@dataclass
class Drive:
    drive_id: str
    tape: str | None = None  # mounted cartridge
    head: int = 0  # byte offset of the head on the mounted cartridge
    failed: bool = False
    busy_until: float = 0.0
    op: Any = None  # the engine's current operation, None when idle
    batch: list[Any] = field(default_factory=list)  # queued operations on the mounted tape
    mounts: int = 0

    @property
    def idle(self) -> bool:
        return self.op is None and not self.batch and not self.failed


@dataclass(frozen=True)
class TimeModel:
    mount: float
    unmount: float
    locate_base: float
    locate_full: float
    rate: float
    capacity: int

    @classmethod
    def from_config(cls, cfg: TapeConfig) -> TimeModel:
        return cls(cfg.mount_seconds, cfg.unmount_seconds, cfg.locate_base_seconds,
                   cfg.locate_full_seconds, cfg.rate_bytes_per_second, cfg.capacity_bytes)

    def switch(self, mounted: str | None, wanted: str) -> float:
        """Time to get ``wanted`` into a drive that holds ``mounted``."""
        if mounted == wanted:
            return 0.0
        return (self.unmount if mounted else 0.0) + self.mount

    def locate(self, head: int, target: int) -> float:
        if head == target:
            return 0.0
        return self.locate_base + self.locate_full * abs(target - head) / max(self.capacity, 1)

    def transfer(self, nbytes: int) -> float:
        return nbytes / self.rate


def _scan_records(path: Path) -> Iterator[tuple[int, int, dict[str, Any], int]]:
    """Yield (fseq, offset, header, record_size) of every complete record on a cartridge."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        offset, fseq = 0, 0
        while offset + 16 <= size:
            f.seek(offset)
            head = f.read(16)
            if head[:8] != MAGIC:
                return
            (hlen,) = struct.unpack(">Q", head[8:16])
            try:
                header = json.loads(f.read(hlen))
            except ValueError:
                return
            end = offset + 16 + hlen + int(header.get("size", 0) if header["kind"] == "file" else 0)
            if end + 8 > size:
                return
            f.seek(end)
            if f.read(8) != END:
                return
            record_size = end + 8 - offset
            yield fseq, offset, header, record_size
            offset += record_size
            fseq += 1


class TapeLibrary:
    """Cartridges (per pool) and drives; file I/O for tape records; no notion of time itself."""

    def __init__(self, root: Path, cfg: TapeConfig):
        self.root = Path(root)
        self.cfg = cfg
        self.model = TimeModel.from_config(cfg)
        self.pools = [f"pool{i}" for i in range(cfg.copies)]
        self.tapes: dict[str, Cartridge] = {}
        self.drives = [Drive(f"drive{i}") for i in range(cfg.drives)]
        self.root.mkdir(parents=True, exist_ok=True)
        for i, pool in enumerate(self.pools):
            pool_dir = self.root / pool
            pool_dir.mkdir(exist_ok=True)
            existing = sorted(pool_dir.glob("*.tape"))
            for p in existing:
                self._load(p, pool)
            for n in range(len(existing), cfg.cartridges):
                self._label(pool, f"{POOL_LETTERS[i]}{n + 1:05d}L9")

    def _label(self, pool: str, tape: str) -> Cartridge:
        path = self.root / pool / f"{tape}.tape"
        path.touch()
        cart = Cartridge(tape, pool, path, 0, 0, self.cfg.capacity_bytes)
        self.tapes[tape] = cart
        return cart

    def _load(self, path: Path, pool: str) -> Cartridge:
        used, records = 0, 0
        for _fseq, offset, _h, size in _scan_records(path):
            used, records = offset + size, records + 1
        cart = Cartridge(path.stem, pool, path, used, records, self.cfg.capacity_bytes)
        self.tapes[cart.tape] = cart
        return cart

    # -- placement ---------------------------------------------------------------------------
    def write_tape(self, pool: str, nbytes: int) -> Cartridge:
        """The cartridge of ``pool`` that takes the next ``nbytes`` (labels a new one if needed)."""
        carts = sorted((c for c in self.tapes.values() if c.pool == pool), key=lambda c: c.tape)
        for c in carts:
            if c.used + nbytes <= c.capacity:
                return c
        letter = POOL_LETTERS[self.pools.index(pool)]
        return self._label(pool, f"{letter}{len(carts) + 1:05d}L9")

    # -- record I/O --------------------------------------------------------------------------
    def append(self, tape: str, header: dict[str, Any], source: Path | None) -> tuple[int, int, int]:
        """Append one record (header + data of ``source``); fsync; return (fseq, offset, size).

        The data is checksummed while copied and must match ``header['adler32']``: a file that
        changed on disk since ingest never reaches tape.
        """
        cart = self.tapes[tape]
        hbytes = json.dumps(header, sort_keys=True).encode()
        with open(cart.path, "r+b") as f:
            f.truncate(cart.used)  # drop a record cut short by a crash
            f.seek(cart.used)
            offset = cart.used
            f.write(MAGIC + struct.pack(">Q", len(hbytes)) + hbytes)
            if header["kind"] == "file" and source is not None:
                adler, n = 1, 0
                with open(source, "rb") as src:
                    while chunk := src.read(CHUNK):
                        adler = adler32(chunk, adler)
                        n += len(chunk)
                        f.write(chunk)
                if n != header["size"] or adler32_hex(adler) != header["adler32"]:
                    f.truncate(offset)
                    raise ChecksumError(str(source), header["adler32"],
                                        f"{adler32_hex(adler)} ({n} bytes)")
            f.write(END)
            f.flush()
            os.fsync(f.fileno())
            size = f.tell() - offset
        fseq = cart.records
        cart.used, cart.records = offset + size, cart.records + 1
        return fseq, offset, size

    def read_into(self, tape: str, offset: int, out: BinaryIO, expect_sha256: str) -> dict[str, Any]:
        """Copy the data of the record at ``offset`` into ``out``, verifying sha256 and adler32."""
        cart = self.tapes.get(tape)
        if cart is None:
            raise TapeError(tape, "no such cartridge")
        try:
            with open(cart.path, "rb") as f:
                f.seek(offset)
                head = f.read(16)
                if head[:8] != MAGIC:
                    raise TapeError(tape, f"no record at offset {offset}")
                (hlen,) = struct.unpack(">Q", head[8:16])
                header = json.loads(f.read(hlen))
                remaining = int(header["size"])
                sha, adler = hashlib.sha256(), 1
                while remaining:
                    chunk = f.read(min(CHUNK, remaining))
                    if not chunk:
                        raise TapeError(tape, f"record at {offset} is truncated")
                    sha.update(chunk)
                    adler = adler32(chunk, adler)
                    out.write(chunk)
                    remaining -= len(chunk)
                if f.read(8) != END:
                    raise TapeError(tape, f"record at {offset} has no end marker")
        except (OSError, ValueError, KeyError) as err:
            raise TapeError(tape, f"unreadable record at {offset}: {err}") from err
        if sha.hexdigest() != expect_sha256 or adler32_hex(adler) != header["adler32"]:
            raise TapeError(tape, f"checksum mismatch in record at {offset}")
        return header

    def scan(self, tape: str) -> Iterator[tuple[int, int, dict[str, Any], int]]:
        return _scan_records(self.tapes[tape].path)

    def drive(self, drive_id: str) -> Drive:
        for d in self.drives:
            if d.drive_id == drive_id:
                return d
        raise KeyError(drive_id)
