"""The cache key changes with every ingredient and only with them."""

from appliance.recipes.cachekey import cache_key

BASE = dict(image_id="sha256:" + "a" * 64, command=["python3", "x.py"], params={"n": 1},
            env={"TZ": "UTC"}, code_sha256="c" * 64, inputs={"in.fits": "d" * 64})


def test_stable() -> None:
    assert cache_key(**BASE) == cache_key(**dict(BASE))


def test_each_ingredient_matters() -> None:
    changes = dict(image_id="sha256:" + "b" * 64, command=["python3", "y.py"], params={"n": 2},
                   env={"TZ": "UTC", "X": "1"}, code_sha256="e" * 64, inputs={"in.fits": "f" * 64})
    keys = {cache_key(**{**BASE, k: v}) for k, v in changes.items()}
    assert len(keys) == len(changes) and cache_key(**BASE) not in keys


def test_dict_order_irrelevant() -> None:
    a = cache_key(**{**BASE, "params": {"a": 1, "b": 2}})
    b = cache_key(**{**BASE, "params": {"b": 2, "a": 1}})
    assert a == b
