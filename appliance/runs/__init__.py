"""Runs: executing a recipe hermetically (``runner``), the run record and run store (``record``),
host facts for provenance (``hostinfo``), and replay with a verdict (``replay``).
"""
