"""The shipped recipes, installed as ``amnetvid_sk.pipelines`` (see pyproject.toml).

Each module exposes ``pipeline(store)`` and ``param_grid``; ``amnetvid_sk.evaluate.load_recipe``
finds them by name.
"""
