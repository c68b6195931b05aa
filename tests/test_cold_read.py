"""The store's cold read in a fresh process: what it imports (a grid search's workers each pay it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from amnetvid_sk.store import FeatureStore
from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

ROOT = Path(__file__).resolve().parents[1]

# argv: store, ids joined by commas; prints the shapes and which heavy modules got imported
READ = """
import json, sys
import numpy as np
from amnetvid_sk.store import FeatureStore
ids = np.array(sys.argv[2].split(","), dtype=object)
scores, maps = FeatureStore(sys.argv[1]).read_arrays(ids, n_frames=4)
print(json.dumps({"shapes": [scores.shape, maps.shape], "scores": scores.tolist(),
                  "imported": sorted({"pandas", "torch", "sklearn"} & set(sys.modules))}))
"""


def _read_in_fresh_process(store: Path, ids) -> dict:
    done = subprocess.run([sys.executable, "-c", READ, str(store), ",".join(ids)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def cached_store(tmp_path_factory):
    """A store of 24 synthetic videos whose array cache file has been written by a first read."""
    store = tmp_path_factory.mktemp("cold") / "store"
    maps, scores, y = make_moving_peak_dataset(24, seed=0)
    ids = write_synthetic_store(store, maps, scores, y)
    FeatureStore(store).read_arrays(ids, n_frames=4)  # all videos: writes the cache file
    assert any((store / ".cache").iterdir())
    return store, ids, scores


def test_cold_read_imports_neither_pandas_nor_torch(cached_store):
    """read_arrays in a fresh process, the cache file present, imports neither pandas, torch nor scikit-learn."""
    store, ids, scores = cached_store
    wanted = [ids[5], ids[0], ids[5], ids[23]]
    out = _read_in_fresh_process(store, wanted)
    assert out["imported"] == []
    assert out["shapes"] == [[4, 4], [4, 4, 3, 14, 14]]
    np.testing.assert_array_equal(np.array(out["scores"], dtype=np.float32), scores[[5, 0, 5, 23]])
