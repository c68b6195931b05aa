"""Shared fixtures: small real clips and an AMNet checkpoint with random weights."""

import contextlib
import io
import os
import shutil
import subprocess
import sys
import threading
import traceback
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
AMNETVID = [sys.executable, "-m", "amnetvid_sk.cli"]


class CliResult(NamedTuple):
    """What one ``amnetvid`` run gave: exit status, stdout and stderr (as subprocess.CompletedProcess names them)."""

    returncode: int
    stdout: str
    stderr: str


def _expect(result, args, check):
    if check is not None and result.returncode != check:
        raise AssertionError(
            f"amnetvid {' '.join(map(str, args))} exited {result.returncode} (expected {check})\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


@contextlib.contextmanager
def _environment(cwd, env):
    """Run in ``cwd`` with ``env`` added to the environment; both put back afterwards."""
    before_cwd, before_env = os.getcwd(), dict(os.environ)
    os.chdir(cwd)
    os.environ.update(env or {})
    try:
        yield
    finally:
        os.chdir(before_cwd)
        os.environ.clear()
        os.environ.update(before_env)


def run_cli(*args, cwd=None, env=None, check=None):
    """Run ``amnetvid ARGS`` in this process: ``main(argv)`` with stdout and stderr captured.

    What a subprocess would give, without paying torch's and scikit-learn's imports again: the
    exit status (argparse's ``SystemExit`` included), stdout, and stderr with the Python warnings
    the command raised and, for a bug, the traceback (exit status 1, as the interpreter gives).
    ``env`` adds environment variables for the call. Use :func:`run_cli_process` where the process
    itself is what is tested (signals, imports a command must not pay, the installed script).
    """
    from amnetvid_sk.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _environment(cwd or ROOT, env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings():
        # pytest records warnings; a command run by a user prints them on stderr
        warnings.simplefilter("default")
        warnings.showwarning = _print_warning
        try:
            status = main([str(a) for a in args])
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                print(exc.code, file=err)
        except Exception:  # a bug: the interpreter would print the traceback and exit 1
            traceback.print_exc(file=err)
            status = 1
    return _expect(CliResult(status, out.getvalue(), err.getvalue()), args, check)


def _print_warning(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_cli_process(*args, cwd=None, env=None, timeout=600, check=None):
    """Run the real ``amnetvid`` command line in a subprocess (``env`` added to the environment)."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run([*AMNETVID, *map(str, args)], cwd=cwd or ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    return _expect(proc, args, check)


def moving_frames(n, height=48, width=64, seed=0):
    """Frames of a bright square moving over a textured background (varied content)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(height // 8, width // 8, 3), dtype=np.uint8)
    base = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))
    frames = np.repeat(base[None], n, axis=0).copy()
    for i in range(n):
        x = int((width - 16) * i / max(n - 1, 1))
        frames[i, 16:32, x:x + 16] = 255
    return frames


@contextlib.contextmanager
def fresh_loky_workers():
    """joblib's worker processes inside the block are new ones, and are gone after it.

    loky keeps its workers between calls, in this process for the whole session: workers started
    before a test put a plug-in's folder on PYTHONPATH cannot import the plug-in.
    """
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)
    try:
        yield
    finally:
        get_reusable_executor().shutdown(wait=True)


def in_threads(func, args: list) -> list:
    """``func(a)`` for each ``a`` of ``args``, each in its own thread, all at once; the exceptions
    they raised (so that a test's main thread can assert there were none)."""
    errors = []

    def run(a):
        try:
            func(a)
        except Exception as e:  # reported to the caller
            errors.append(e)

    threads = [threading.Thread(target=run, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def textbook_lstm_step(gates, c_prev):
    """One LSTM step as autograd sees the textbook expressions (Keras' gate order i, f, c, o along
    dim 1; ``c_prev=None`` is a zero state): the reference of the written-out ones."""
    import torch

    i, f, g, o = gates.chunk(4, dim=1)
    i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
    c = i * torch.tanh(g) if c_prev is None else f * c_prev + i * torch.tanh(g)
    return o * torch.tanh(c), c


@pytest.fixture(scope="module")
def amnet():
    """AMNet with random weights (seed 0), float32 on every CPU (auto would pick bfloat16 where it is
    native): the reference outputs of the AMNet tests."""
    from amnetvid_sk.frame_models.amnet import AMNet

    return AMNet.from_random(seed=0, device="cpu", precision="float32")


@pytest.fixture
def seed():
    """Seed the global generators; tests that need data make it from this seed."""
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
    return 0


@contextlib.contextmanager
def torch_threads(n):
    """``n`` torch intra-op threads inside the block, whatever the machine has; the count before restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Train with one intra-op thread: on 2 shared, busy cores, two threads per tiny convolution
    wait on each other (about 4x slower here). Restored afterwards."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def amnet_weights(tmp_path_factory):
    """A checkpoint in the published AMNet format, with random weights."""
    from amnetvid_sk.frame_models.amnet import build_amnet_network, save_amnet_checkpoint

    path = tmp_path_factory.mktemp("weights") / "amnet_random.pkl"
    save_amnet_checkpoint(path, build_amnet_network(seed=0))
    return path


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    """Six small H.264/VP9 clips of 12 frames."""
    from amnetvid_sk.testing.clips import write_clip

    folder = tmp_path_factory.mktemp("clips")
    for i in range(6):
        ext, codec = ("webm", "vp9") if i % 3 == 2 else ("mp4", "h264")
        write_clip(folder / f"clip{i}.{ext}", moving_frames(12, seed=i), fps=12, codec=codec)
    return folder


@pytest.fixture
def clips(clip_dir, tmp_path):
    """A private copy of the clips (tests may touch or break them)."""
    dst = tmp_path / "clips"
    shutil.copytree(clip_dir, dst)
    return dst


@pytest.fixture(scope="session")
def moving_peak_store(tmp_path_factory):
    """A store of 200 synthetic videos whose label is the attention peak's signed speed."""
    from amnetvid_sk.testing.synthetic import make_moving_peak_dataset, write_synthetic_store

    maps, scores, y = make_moving_peak_dataset(200, n_frames=4, seed=0)
    rng = np.random.default_rng(1)
    long = np.clip(y + rng.normal(0, 0.05, len(y)), 0, 1)
    path = tmp_path_factory.mktemp("syn") / "store"
    ids = write_synthetic_store(path, maps, scores, y, long)
    return path, ids, maps, scores, y


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 128 KiB tmpfs to fill up (we run as root); unmounted afterwards. Resize it with
    ``mount -o remount,size=...``; skipped, saying why, where no tmpfs can be mounted."""
    mount = shutil.which("mount")
    folder = tmp_path / "small_disk"
    folder.mkdir()
    if mount is None:
        pytest.skip("no mount command here: cannot make a small disk to fill")
    proc = subprocess.run([mount, "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {proc.stderr.strip()}")
    yield folder
    # lazily: a child process that has just exited may still hold it busy for a moment
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def pytest_configure(config):
    """Under pytest-xdist, each worker gets its share of the cores for torch (and for the processes
    it starts): two workers of two torch threads each on two cores wait on each other's threads,
    several times slower than one thread each.

    A run with torch's kernels limited (``ATEN_CPU_CAPABILITY``, to try an AVX2 machine's path on
    an AVX512 one) gets an Inductor cache of its own: sharing the default one with native runs
    loaded compiled kernels of the other kind, which trained to NaN or corrupted the heap."""
    capability = os.environ.get("ATEN_CPU_CAPABILITY")
    if capability and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        import getpass
        import tempfile

        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(
            tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}_{capability}")
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // int(workers))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
