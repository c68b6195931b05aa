"""How the benches time things: the best of several runs, and numbers from a fresh process.

Imported by the bench scripts of this folder (run as ``python bench/NAME.py``, which puts this
folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The checkout, put on a fresh process's import path (after the caller's own PYTHONPATH).
ROOT = Path(__file__).resolve().parents[1]

#: A store read of the ids in a file, for :func:`fresh_process`: argv = store, file of ids (one a
#: line), n_frames; prints its seconds (imports not counted).
COLD_READ = """
import sys, time
import numpy as np
from amnetvid_sk.store import FeatureStore
ids = np.array(open(sys.argv[2]).read().split(), dtype=object)
start = time.perf_counter()
scores, maps = FeatureStore(sys.argv[1]).read_arrays(ids, n_frames=int(sys.argv[3]))
print(time.perf_counter() - start)
"""


@contextlib.contextmanager
def freed_memory_kept(kept: bool):
    """Fits and frame models keep freed memory (the package's default) or, with ``kept=False``,
    leave glibc's malloc as it is (``AMNETVID_KEEP_FREED_MEMORY=0``), to time what keeping is worth."""
    before = os.environ.get("AMNETVID_KEEP_FREED_MEMORY")
    if not kept:
        os.environ["AMNETVID_KEEP_FREED_MEMORY"] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("AMNETVID_KEEP_FREED_MEMORY", None)
        else:
            os.environ["AMNETVID_KEEP_FREED_MEMORY"] = before


def best_of(repeat: int, func):
    """``(best seconds, last result)`` of ``repeat`` calls of ``func``."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def fresh_process(code: str, *args, cache: bool = True) -> list[float]:
    """The numbers of the last line a script printed, run in a fresh process (the array cache off
    if asked): imports and first-time costs as a new command meets them."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])))
    env.pop("AMNETVID_CACHE_BYTES", None)
    if not cache:
        env["AMNETVID_CACHE_BYTES"] = "0"
    # not run in the checkout: `python -c` puts the working directory first on the import path
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True,
                          text=True, cwd=tempfile.gettempdir())
    if done.returncode:
        raise RuntimeError(f"fresh process failed:\n{done.stderr[-3000:]}")
    return [float(x) for x in done.stdout.strip().splitlines()[-1].split()]  # the script's own last line
