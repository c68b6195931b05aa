"""torch.compile of the training steps (amnetvid_sk.compiling, opt-in): when it is used, and the eager fall-back.

Compiling the note's network takes tens of seconds on 2 cores (minutes under load), so the
suite checks the decisions and the fall-backs on real fits, and the compiled path itself on the
score LSTM, whose graph is small; ``bench/bench_training.py`` measures the compiled rate of the
note's network.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from amnetvid_sk._validation import SklearnInvalidParameterError as InvalidParameterError
from torch._dynamo.exc import BackendCompilerFailed

from amnetvid_sk.compiling import AUTO_MIN_SECONDS, TrainingCompiler, compiler_missing
from amnetvid_sk.estimators import ConvLSTMRegressor, ScoreLSTMRegressor

CPU = torch.device("cpu")


def _raw_maps_data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    X = {"maps": rng.random((n, 4, 3, 14, 14), dtype=np.float32),
         "scores": rng.random((n, 4), dtype=np.float32)}
    return X, rng.random(n)


def _small_convlstm(**params):
    return ConvLSTMRegressor(module__map_channels=3, module__map_size=14, module__filters=(4, 4, 2),
                             max_epochs=2, batch_size=8, random_state=0, precision="float32", **params)


GPU = torch.device("cuda")  # only named: a TrainingCompiler touches no device before it compiles


def test_auto_compiles_only_long_float32_fits_on_a_gpu():
    long_fit = TrainingCompiler("auto", GPU, batch_size=32, owner="Net")
    long_fit.after_epoch(1, epoch_seconds=AUTO_MIN_SECONDS / 10, max_epochs=20)
    short_fit = TrainingCompiler("auto", GPU, batch_size=32, owner="Net")
    short_fit.after_epoch(1, epoch_seconds=AUTO_MIN_SECONDS / 100, max_epochs=20)
    assert long_fit.active and not short_fit.active
    # only batches of the fit's own size go through the compiled function
    assert long_fit.module_for(torch.nn.Linear(2, 1), batch=7) is None
    # on a CPU, and under bfloat16 autocast, compiled steps measured no faster: "auto" stays eager
    for device, precision in [(CPU, "float32"), (GPU, "bfloat16"), (CPU, "bfloat16")]:
        fit = TrainingCompiler("auto", device, batch_size=32, owner="Net", precision=precision)
        fit.after_epoch(1, epoch_seconds=AUTO_MIN_SECONDS / 10, max_epochs=20)
        assert not fit.active and fit.given_up


def test_auto_trains_a_small_fit_eagerly_with_the_same_result_as_false():
    X, y = _raw_maps_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" never warns about compilers
        auto = _small_convlstm(compile="auto").fit(X, y)
    eager = _small_convlstm().fit(X, y)
    assert eager.compile is False  # opt-in: skorch's default
    np.testing.assert_array_equal(auto.predict(X), eager.predict(X))


def test_compile_true_without_a_compiler_warns_and_trains_eagerly(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    X, y = _raw_maps_data()
    with pytest.warns(UserWarning, match=r"compile=True.*no C\+\+ compiler '/nonexistent/c\+\+'.*without torch.compile"):
        est = _small_convlstm(compile=True).fit(X, y)
    eager = _small_convlstm(compile=False).fit(X, y)
    np.testing.assert_array_equal(est.predict(X), eager.predict(X))


def test_a_compiler_failure_is_caught_and_other_errors_are_not():
    compiler = TrainingCompiler(True, CPU, batch_size=8, owner="Net")
    assert not compiler.failed(ValueError("a bad input"))
    with pytest.warns(UserWarning, match=r"torch.compile failed .*RuntimeError: cc1plus: out of memory"):
        assert compiler.failed(BackendCompilerFailed(None, RuntimeError("cc1plus: out of memory"), None))
    assert not compiler.active and compiler.module_for(torch.nn.Linear(2, 1), batch=8) is None


def test_compile_rejects_other_values():
    X, y = _raw_maps_data(8)
    with pytest.raises(InvalidParameterError, match=r"'compile' parameter of ConvLSTMRegressor must be"):
        _small_convlstm(compile="always").fit(X, y)


@pytest.mark.slow
@pytest.mark.skipif(compiler_missing(CPU) is not None, reason=f"{compiler_missing(CPU)}")
def test_compiled_training_saves_plain_weights_and_pickles():
    # a small score LSTM (2 steps, one layer): the smallest graph to compile, still some seconds
    rng = np.random.default_rng(0)
    X = rng.random((40, 2), dtype=np.float32)
    y = X.mean(axis=1)
    est = ScoreLSTMRegressor(module__n_frames=2, module__units=(4,), module__dense=8, module__fusion_dense=4,
                             max_epochs=2, batch_size=16, random_state=0, compile=True,
                             callbacks__early_stopping=None).fit(X, y)
    assert all(not k.startswith("_orig_mod") for k in est.module_.state_dict())
    assert len(est.history) == 2 and np.isfinite(est.history[-1, "train_loss"])
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
