"""Whether a fit runs its training steps through ``torch.compile``, and the clean fall-back.

On a CPU, the ConvLSTM's convolutions already run near the machine's matmul ceiling; what is
left is the gate arithmetic between them, which eager float32 runs through the written-out
recurrence of :mod:`amnetvid_sk.convlstm_recurrence` and a compiled step through the plain
per-step loop, which Inductor fuses. ``bench/bench_training.py`` prints the eager and compiled
rates of each network: on a 2-core CPU (AVX512 and AVX2) compiled steps of the working note's
network are now 0.92-0.98x the eager ones in float32 and slower under bfloat16 autocast, as for
the 3D convolutions of ``Conv3DRegressor``; the score LSTM has nothing to gain. Compiling costs
time once per process (tens of seconds on a CPU, less when Inductor's cache holds the code),
needs a C++ compiler on a CPU, and runs code that PyTorch generated for this machine, so it is
opt-in:

- ``compile=False`` (every regressor's default, skorch's) never compiles;
- ``compile=True`` compiles from the first batch;
- ``compile="auto"`` trains its first epoch eagerly, then compiles only when the epochs left
  would take longer eagerly than :data:`AUTO_MIN_SECONDS` (a short fit never waits for a
  compiler), and only a float32 fit on a GPU (on a CPU the compiled steps measured no faster);
- where compiling cannot work, training goes on eagerly: with no C++ compiler for a CPU, quietly
  under "auto" and with a warning under True; when the compiler fails, with one warning that
  says why.

Compiled steps compute what eager ones do, except dropout's masks: Inductor draws them with
its own generator (seeded from torch's, so a fit with ``random_state`` repeats), so compiled
and eager fits of one seed differ as fits of two seeds do.

Only the training forward pass is compiled, at the fit's own batch size: a smaller last
batch, validation and prediction run eagerly (each other shape would cost another compile for
a small share of the work). The compiled function shares its parameters with the network, so
saved model files and ``state_dict`` keys are the same whether a fit compiled or not.
"""

from __future__ import annotations

import os
import shutil
import warnings

import torch

__all__ = ["AUTO_MIN_SECONDS", "TrainingCompiler", "compiler_missing"]

#: ``compile="auto"`` compiles when the epochs after the first would take at least this long
#: eagerly: ten times a typical compile on a 2-core CPU, so compiling pays for itself.
AUTO_MIN_SECONDS = 600.0


def compiler_missing(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot run on ``device``, or None when it can be tried.

    Inductor builds CPU kernels with the C++ compiler named by ``CXX`` (``g++`` by default);
    CUDA kernels need Triton, which torch's CUDA wheels bring.
    """
    if device.type == "cpu":
        cxx = os.environ.get("CXX", "g++")
        if shutil.which(cxx) is None:
            return f"no C++ compiler {cxx!r} on PATH (set CXX, or install g++)"
        return None
    if device.type == "cuda":
        return None
    return f"torch.compile is not used on {device.type} devices"


class TrainingCompiler:
    """The compiled training forward of one fit, built on demand; eager where it cannot run.

    Parameters
    ----------
    choice : {False, True, "auto"}
        The estimator's ``compile`` parameter.
    device : torch.device
        Where the network trains.
    batch_size : int
        The fit's batch size: only batches of this size use the compiled function.
    owner : str
        The estimator's class name, for the warning.
    precision : {"float32", "bfloat16"}, default="float32"
        What the fit runs in: "auto" compiles float32 fits on a GPU only (on a CPU, and under
        bfloat16 autocast, the compiled steps measured no faster than the eager ones).

    Examples
    --------
    >>> import torch
    >>> from amnetvid_sk.compiling import TrainingCompiler
    >>> compiler = TrainingCompiler(False, torch.device("cpu"), batch_size=32, owner="Net")
    >>> compiler.module_for(torch.nn.Linear(2, 1), batch=32) is None  # compile=False: eager
    True
    """

    def __init__(self, choice, device: torch.device, batch_size: int, owner: str, precision: str = "float32"):
        self.choice = choice
        self.device = device
        self.batch_size = int(batch_size)
        self.owner = owner
        self.active = choice is True  # "auto" turns active after its first epoch, if worth it
        self.compiled = None
        self.given_up = False
        if choice == "auto" and (precision != "float32" or device.type == "cpu"):
            self.given_up = True
        elif choice is not False:
            reason = compiler_missing(device)
            if reason is not None:
                self._give_up(reason, warn=choice is True)

    def _give_up(self, reason: str, warn: bool) -> None:
        self.given_up, self.active, self.compiled = True, False, None
        if warn:
            warnings.warn(f"{self.owner}(compile={self.choice!r}): {reason}; training runs without "
                          "torch.compile.", UserWarning, stacklevel=4)

    def after_epoch(self, epochs_done: int, epoch_seconds: float, max_epochs: int) -> None:
        """``compile="auto"``: after the first epoch, compile when the rest would take long eagerly."""
        if self.choice == "auto" and not self.given_up and not self.active and epochs_done == 1:
            self.active = (max_epochs - 1) * epoch_seconds >= AUTO_MIN_SECONDS

    def module_for(self, module: torch.nn.Module, batch: int):
        """The compiled ``module`` for a training batch of ``batch`` videos, or None for eager."""
        if not self.active or batch != self.batch_size:
            return None
        if self.compiled is None:
            self.compiled = torch.compile(module, dynamic=False)
        return self.compiled

    def failed(self, error: Exception) -> bool:
        """Whether ``error`` is a compiler failure (then training goes on eagerly, warned once)."""
        from torch._dynamo.exc import BackendCompilerFailed
        from torch._inductor.exc import InvalidCxxCompiler

        if not isinstance(error, (BackendCompilerFailed, InvalidCxxCompiler)):
            return False
        cause = getattr(error, "inner_exception", None) or error  # the compiler's own error, not dynamo's wrapper
        lines = str(cause).strip().splitlines()
        self._give_up(f"torch.compile failed ({type(cause).__name__}: {lines[0][:200] if lines else ''})", warn=True)
        return True
