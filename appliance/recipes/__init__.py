"""Recipes: the format (``recipe.schema.json``), loading with line-accurate errors, the lock
(``recipe.lock``: image ID and input checksums), and the cache key of a run (pure functions).
"""
