"""Batches split over the CPU's threads (frame_models/cpu_parts.py): same outputs, threads put back, errors kept."""

import threading

import numpy as np
import pytest
import torch

from amnetvid_sk.demo import photo_frames
from amnetvid_sk.frame_models.amnet import AMNet
from amnetvid_sk.frame_models.cpu_parts import part_bounds, run_parts

from conftest import torch_threads


@pytest.fixture
def two_torch_threads():
    """Two intra-op threads whatever the machine has, so that batches are split; restored afterwards."""
    with torch_threads(2):
        yield


@pytest.mark.parametrize("n_frames, n_threads", [(8, 2), (7, 2), (3, 4), (1, 2), (16, 5), (2, 1)])
def test_parts_cover_the_frames_once_and_use_every_thread(n_frames, n_threads):
    bounds = part_bounds(n_frames, n_threads)
    assert [start for start, _, _ in bounds] == [0] + [stop for _, stop, _ in bounds[:-1]]
    assert bounds[-1][1] == n_frames
    sizes = [stop - start for start, stop, _ in bounds]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert len(bounds) == min(n_frames, n_threads)
    assert sum(t for _, _, t in bounds) == max(n_threads, len(bounds))


def test_parts_run_side_by_side_and_threads_are_put_back(two_torch_threads):
    seen = {}
    lock = threading.Lock()
    together = threading.Barrier(2, timeout=30)  # broken (an error) unless both parts run at the same time

    def run(lo, hi):
        with lock:
            seen[(lo, hi)] = (threading.current_thread().name, torch.get_num_threads())
        if hi - lo > 1:
            together.wait()

    run_parts(run, 8)
    assert sorted(seen) == [(0, 4), (4, 8)]
    names = {name for name, _ in seen.values()}
    assert len(names) == 2 and all(name.startswith("amnetvid-cpu-part") for name in names)
    assert all(threads == 1 for _, threads in seen.values())
    assert torch.get_num_threads() == 2

    seen.clear()
    run_parts(run, 1)  # one frame: run here, on all threads
    assert seen == {(0, 1): (threading.current_thread().name, 2)}


def test_an_error_in_a_part_is_raised_after_all_parts_end(two_torch_threads):
    ended = []

    def run(lo, hi):
        if lo == 0:
            raise ValueError("bad frame 0")
        ended.append(lo)

    with pytest.raises(ValueError, match="bad frame 0"):
        run_parts(run, 6)
    assert ended == [3]
    assert torch.get_num_threads() == 2


def test_split_amnet_gives_the_whole_batchs_outputs(two_torch_threads):
    """AMNet with its batches split gives, up to float rounding, what it gives run whole; in the same order."""
    frames = photo_frames(7)
    split = AMNet.from_random(seed=0, device="cpu", precision="float32", batch_size=7)
    whole = AMNet.from_random(seed=0, device="cpu", precision="float32", batch_size=7)
    whole.thread_safe_forward = False
    a, b = split.predict_outputs(frames, embeddings=True), whole.predict_outputs(frames, embeddings=True)
    np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.maps, b.maps, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=1e-4, atol=1e-5)
    assert np.abs(a.scores[0] - a.scores[1:]).max() > 1e-4  # the frames differ, so a mix-up would show
    # the same split the next time: identical outputs from run to run
    again = split.predict_outputs(frames, embeddings=True)
    assert np.array_equal(again.scores, a.scores) and np.array_equal(again.maps, a.maps)
