"""Output comparison for replays: one policy per output (sha256, fits, text, ignore), each
returning an ``OutputComparison``; ``verdict.ReplayVerdict`` aggregates them (FITSDiff-style:
the verdict is data, the report is generated from it).
"""
