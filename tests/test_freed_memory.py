"""keep_freed_memory: glibc keeps freed blocks inside the block and gives them back after it."""

import os
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
    the next allocation; on leaving, what was kept goes back."""
    assert _freed_mb() > 0.75 * BLOCK_MB
    with keep_freed_memory():
        assert _freed_mb() < 0.25 * BLOCK_MB
        kept = _rss_mb()
    assert kept - _rss_mb() > 0.75 * BLOCK_MB
    assert _freed_mb() > 0.75 * BLOCK_MB  # glibc's behaviour is back


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
    assert _freed_mb() > 0.75 * BLOCK_MB


@pytest.mark.parametrize("env", [{"AMNETVID_KEEP_FREED_MEMORY": "0"}, {"MALLOC_MMAP_THRESHOLD_": "65536"},
                                 {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}])
def test_the_users_choice_is_left_alone(env, monkeypatch):
    """With the opt-out, a malloc setting of the user's or a preloaded allocator, nothing changes."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert not keeps_freed_memory()
    assert next(iter(env)) in freed_memory._why_not()
    with keep_freed_memory():
        assert freed_memory._depth == 0
        assert _freed_mb() > 0.75 * BLOCK_MB


class _RecordDepth(Callback):
    def initialize(self):
        self.depths = []
        return self

    def on_batch_end(self, net, **kwargs):
        self.depths.append(freed_memory._depth)


def test_training_and_prediction_keep_freed_memory():
    """A fit's batches run inside keep_freed_memory; after fit and predict, glibc's settings are back."""
    record = _RecordDepth()
    rng = np.random.default_rng(0)
    scores, y = rng.random((40, 4)).astype(np.float32), rng.random(40).astype(np.float32)
    reg = ScoreLSTMRegressor(max_epochs=2, train_split=None, random_state=0, callbacks=[("depth", record)])
    reg.fit(scores, y)
    assert record.depths and min(record.depths) == 1
    assert freed_memory._depth == 0
    assert reg.predict(scores).shape == (40,)
    assert freed_memory._depth == 0
