"""Transfer outcomes as values: ``.ok``, ``.report()`` for people, ``.to_json()`` for scripts."""

from __future__ import annotations

from dataclasses import dataclass, field


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@dataclass
class TransferResult:
    src: str
    dst: str
    ok: bool = False
    size: int = 0
    seconds: float = 0.0
    attempts: int = 0
    backend: str = ""
    checksum_type: str | None = None
    source_checksum: str | None = None
    dest_checksum: str | None = None
    resumed_from: int = 0  # bytes kept from an interrupted attempt
    error: str | None = None
    error_type: str | None = None
    exit_code: int = 0
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def verified(self) -> bool:
        return bool(self.ok and self.checksum_type and self.source_checksum == self.dest_checksum)

    @property
    def rate(self) -> float:
        return self.size / self.seconds if self.seconds > 0 else 0.0

    def raise_for_error(self) -> None:
        if not self.ok and self.exception is not None:
            raise self.exception

    def report(self) -> str:
        if not self.ok:
            return f"FAILED {self.src} -> {self.dst}: {self.error}"
        check = (f"{self.checksum_type}={self.dest_checksum} verified" if self.verified
                 else "NOT verified (no checksum)")
        extra = f", resumed at {human_size(self.resumed_from)}" if self.resumed_from else ""
        retry = f", {self.attempts} attempts" if self.attempts > 1 else ""
        return (f"OK {self.src} -> {self.dst}: {human_size(self.size)} in {self.seconds:.2f} s "
                f"({human_size(self.rate)}/s), {check}{extra}{retry}")

    def to_json(self) -> dict:
        return {
            "src": self.src, "dst": self.dst, "ok": self.ok, "size": self.size,
            "seconds": round(self.seconds, 3), "attempts": self.attempts, "backend": self.backend,
            "checksum_type": self.checksum_type, "source_checksum": self.source_checksum,
            "dest_checksum": self.dest_checksum, "verified": self.verified,
            "resumed_from": self.resumed_from, "error": self.error, "error_type": self.error_type,
            "exit_code": self.exit_code,
        }


@dataclass
class BulkResult:
    results: list[TransferResult] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # e.g. staging events worth showing

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> list[TransferResult]:
        return [r for r in self.results if not r.ok]

    @property
    def exit_code(self) -> int:
        codes = [r.exit_code for r in self.failed]
        return codes[0] if codes else 0

    @property
    def size(self) -> int:
        return sum(r.size for r in self.results if r.ok)

    def report(self) -> str:
        lines = [r.report() for r in self.results] + self.notes
        n_ok = len(self.results) - len(self.failed)
        rate = human_size(self.size / self.seconds) + "/s" if self.seconds > 0 else "-"
        lines.append(f"{n_ok}/{len(self.results)} files OK, {human_size(self.size)} in "
                     f"{self.seconds:.2f} s ({rate})")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"ok": self.ok, "files": [r.to_json() for r in self.results],
                "seconds": round(self.seconds, 3), "bytes": self.size, "notes": self.notes,
                "exit_code": self.exit_code}
