"""keep_freed_memory: glibc keeps freed blocks inside the block and gives them back after it."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from skorch.callbacks import Callback

from amnetvid_sk import freed_memory
from amnetvid_sk.estimators import ScoreLSTMRegressor
from amnetvid_sk.freed_memory import keep_freed_memory, keeps_freed_memory

pytestmark = pytest.mark.skipif(not keeps_freed_memory(),
                                reason=f"malloc is left alone here: {freed_memory._why_not()}")

BLOCK_MB = 96

#: What happens to a freshly written BLOCK_MB array when it is freed, outside and inside the block,
#: in a fresh process: one that ran earlier tests may hold free heap space (left by an earlier
#: block) large enough to serve the array from the heap, where glibc would otherwise map it anew.
SEQUENCE = f"""
import json, os
import numpy as np
from amnetvid_sk.freed_memory import keep_freed_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def freed_mb():
    block = np.ones({BLOCK_MB} * 2**20 // 8)
    written = rss_mb()
    del block
    return written - rss_mb()

out = {{"outside": freed_mb()}}
with keep_freed_memory():
    out["inside"] = freed_mb()
    kept = rss_mb()
out["given_back"] = kept - rss_mb()
out["after"] = freed_mb()
print(json.dumps(out))
"""


def _clean_environment(**extra) -> dict:
    """This process's environment without malloc settings (Dask's nanny may have set one in
    os.environ for its workers), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in freed_memory._USER_SETTINGS + ("LD_PRELOAD",)}
    return {**env, **extra}


def _fresh_sequence(**env) -> dict:
    out = subprocess.run([sys.executable, "-c", SEQUENCE], env=_clean_environment(**env), capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _freed_mb() -> float:
    """How much the resident memory drops when a freshly written BLOCK_MB array is freed."""
    block = np.ones(BLOCK_MB * 2**20 // 8)
    written = _rss_mb()
    del block
    return written - _rss_mb()


def test_freed_block_is_kept_inside_and_given_back_after():
    """Outside, a large freed block leaves the process at once (glibc's mmap); inside, it stays for
    the next allocation; on leaving, what was kept goes back, and glibc's behaviour with it."""
    mb = _fresh_sequence()
    assert mb["outside"] > 0.75 * BLOCK_MB and mb["after"] > 0.75 * BLOCK_MB, mb
    assert mb["inside"] < 0.25 * BLOCK_MB and mb["given_back"] > 0.75 * BLOCK_MB, mb
    # the same inside this process, whatever ran before
    with keep_freed_memory():
        assert _freed_mb() < 0.25 * BLOCK_MB
        kept = _rss_mb()
    assert kept - _rss_mb() > 0.75 * BLOCK_MB


def test_the_opt_out_leaves_malloc_alone(monkeypatch):
    """AMNETVID_KEEP_FREED_MEMORY=0, read at each use, leaves malloc as it is."""
    mb = _fresh_sequence(AMNETVID_KEEP_FREED_MEMORY="0")
    assert min(mb["outside"], mb["inside"], mb["after"]) > 0.75 * BLOCK_MB, mb
    monkeypatch.setenv("AMNETVID_KEEP_FREED_MEMORY", "0")
    assert not keeps_freed_memory()
    with keep_freed_memory():
        assert freed_memory._depth == 0


@pytest.mark.parametrize("value", ["false", "2", "off"])
def test_a_switch_value_other_than_0_or_1_is_named(value, monkeypatch):
    """AMNETVID_KEEP_FREED_MEMORY takes 0 or 1; anything else is an error naming both, not a guess."""
    from amnetvid_sk.errors import ParameterError

    monkeypatch.setenv("AMNETVID_KEEP_FREED_MEMORY", value)
    with pytest.raises(ParameterError, match=rf"AMNETVID_KEEP_FREED_MEMORY must be 0 .* or 1 .*got '{value}'"):
        with keep_freed_memory():
            pass
    assert freed_memory._depth == 0
    monkeypatch.setenv("AMNETVID_KEEP_FREED_MEMORY", "1")
    assert keeps_freed_memory()


def test_nested_and_threaded_blocks_restore_once_all_have_left():
    """An inner block, or another thread's, leaving does not end the outer one's setting."""
    with keep_freed_memory():
        with keep_freed_memory():
            pass
        inner_left = threading.Event()

        def other_thread():
            with keep_freed_memory():
                pass
            inner_left.set()

        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        assert inner_left.is_set()
        assert _freed_mb() < 0.25 * BLOCK_MB
    assert freed_memory._depth == 0


@pytest.mark.parametrize("name, value", [("MALLOC_MMAP_THRESHOLD_", "65536"),
                                         ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
                                         ("LD_PRELOAD", "libjemalloc.so.2")])
def test_a_malloc_setting_the_process_started_with_is_left_alone(name, value):
    """A user's malloc setting, or a preloaded allocator, in the environment a process starts with
    (a real process: glibc reads them at its start) turns keep_freed_memory off there."""
    if name == "LD_PRELOAD":  # a name that does not load: the dynamic loader only warns
        value = os.path.join(os.path.dirname(sys.executable), value)
    env = _clean_environment(**{name: value})
    code = "from amnetvid_sk.freed_memory import _why_not; print(_why_not())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert name in out.stdout, out.stdout + out.stderr


def test_a_setting_made_after_the_start_is_not_the_users(monkeypatch):
    """What is set in os.environ later (Dask's nanny sets MALLOC_TRIM_THRESHOLD_ for the workers it
    spawns) does not reach this process's malloc, so it does not turn keep_freed_memory off."""
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    assert keeps_freed_memory()
    with keep_freed_memory():
        assert _freed_mb() < 0.25 * BLOCK_MB


class _RecordDepth(Callback):
    def initialize(self):
        self.depths = []
        return self

    def on_batch_end(self, net, **kwargs):
        self.depths.append(freed_memory._depth)


def test_training_and_prediction_keep_freed_memory():
    """A fit's batches run inside keep_freed_memory, and the block is closed after fit and predict."""
    record = _RecordDepth()
    rng = np.random.default_rng(0)
    scores, y = rng.random((40, 4)).astype(np.float32), rng.random(40).astype(np.float32)
    reg = ScoreLSTMRegressor(max_epochs=2, train_split=None, random_state=0, callbacks=[("depth", record)])
    reg.fit(scores, y)
    assert record.depths and min(record.depths) == 1
    assert freed_memory._depth == 0
    assert reg.predict(scores).shape == (40,)
    assert freed_memory._depth == 0
