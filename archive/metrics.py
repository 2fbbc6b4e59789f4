"""Prometheus text exposition of the archive's state (queues, mounts, bytes, cache fill)."""

from __future__ import annotations

from archive.engine import Archive


def render(a: Archive) -> str:
    s = a.catalog.stats()
    m = a.metrics
    cap = a.cfg.cache.capacity_bytes
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, value: float, labels: str = "") -> None:
        if not any(line.startswith(f"# HELP {name} ") for line in lines):
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name}{labels} {value:g}" if isinstance(value, float) else
                     f"{name}{labels} {value}")

    metric("lta_files", "gauge", "Files in the catalog.", int(s["files"]))
    metric("lta_bytes", "gauge", "Bytes of all files in the catalog.", int(s["bytes"]))
    metric("lta_recall_queue", "gauge", "Recalls by state.", int(s["recalls_queued"]),
           '{state="queued"}')
    metric("lta_recall_queue", "gauge", "Recalls by state.", int(s["recalls_active"]),
           '{state="active"}')
    metric("lta_recall_queue", "gauge", "Recalls by state.", int(s["recalls_lost"]),
           '{state="lost"}')
    metric("lta_stage_files_open", "gauge", "Stage request files not yet finished.",
           int(s["stage_files_open"]))
    metric("lta_pins", "gauge", "Disk pins held by stage requests.", int(s["pins"]))
    metric("lta_cache_bytes", "gauge", "Bytes in the disk cache.", int(s["disk_bytes"]))
    metric("lta_cache_files", "gauge", "Files in the disk cache.", int(s["disk_files"]))
    metric("lta_cache_capacity_bytes", "gauge", "Disk cache capacity.", int(cap))
    metric("lta_cache_fill_ratio", "gauge", "Disk cache fill (0..1).",
           float(s["disk_bytes"]) / cap if cap else 0.0)
    metric("lta_tape_copies", "gauge", "Tape copies recorded in the catalog.",
           int(s["tape_copies"]))
    metric("lta_tape_mounts_total", "counter", "Cartridge mounts.", m.mounts)
    metric("lta_tape_read_bytes_total", "counter", "Bytes recalled from tape.", m.tape_bytes_read)
    metric("lta_tape_written_bytes_total", "counter", "Bytes migrated to tape.",
           m.tape_bytes_written)
    metric("lta_tape_read_files_total", "counter", "Files recalled.", m.tape_files_read)
    metric("lta_tape_written_files_total", "counter", "Files migrated.", m.tape_files_written)
    metric("lta_recall_failures_total", "counter", "Failed tape reads (retried or lost).",
           m.recall_failures)
    metric("lta_evicted_files_total", "counter", "Files evicted from the disk cache.",
           m.evicted_files)
    metric("lta_ingested_bytes_total", "counter", "Bytes ingested.", m.ingested_bytes)
    metric("lta_http_sent_bytes_total", "counter", "Bytes sent by GET.", m.http_bytes_sent)
    for d in a.library.drives:
        lbl = f'{{drive="{d.drive_id}"}}'
        metric("lta_drive_busy", "gauge", "1 if the drive is working.", 1 if d.op else 0, lbl)
        metric("lta_drive_failed", "gauge", "1 if the drive is out of service.",
               1 if d.failed else 0, lbl)
    return "\n".join(lines) + "\n"
