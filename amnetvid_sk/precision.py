"""Numeric precision of frame models: ``auto``, ``float32`` or ``bfloat16``.

bfloat16 autocast pays only where the hardware computes it: CUDA GPUs with
bfloat16 support, and CPUs with AVX512-BF16 or AMX. Elsewhere (an AVX2 laptop or
server) oneDNN emulates it, measured 14-20x *slower* than float32 for ResNets.
So ``auto``, the default, picks bfloat16 only on such hardware, and float32 on
every other machine. The choice is part of a frame model's fingerprint.
"""

from __future__ import annotations

import os

from .errors import ParameterError, allowed_values

__all__ = ["PRECISIONS", "native_bfloat16", "resolve_precision"]

#: values of every ``precision`` parameter and ``--precision`` option
PRECISIONS = ("auto", "float32", "bfloat16")
#: what a note says when bfloat16 runs where it is emulated
EMULATED = "so it is emulated, many times slower than float32"


def _cpu_native_bfloat16() -> tuple[bool, str]:
    import torch  # here, not at the top: the CLI reads PRECISIONS without loading torch

    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    has_isa = bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    if not has_isa:
        return False, "this CPU has no native bfloat16"
    # The kernels torch will really run: ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2 limit
    # them below what the CPU has, and then bfloat16 is emulated as on an AVX2 machine.
    capability = torch.backends.cpu.get_cpu_capability()
    onednn_bf16 = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if capability in ("DEFAULT", "AVX2") or not onednn_bf16:
        limit = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("ATEN_CPU_CAPABILITY") or capability
        return False, f"torch's CPU kernels are limited to {limit} here: no native bfloat16"
    isa = "AMX" if caps.get("amx_bf16") else "AVX512-BF16"
    return True, f"this CPU computes bfloat16 natively with {isa}"


def native_bfloat16(device) -> tuple[bool, str]:
    """Whether ``device`` computes bfloat16 natively, and a short reason in words.

    Examples
    --------
    >>> import torch
    >>> from amnetvid_sk.precision import native_bfloat16
    >>> ok, why = native_bfloat16(torch.device("cpu"))
    >>> isinstance(ok, bool) and isinstance(why, str)
    True
    """
    import torch

    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, "this GPU computes bfloat16 natively"
        return False, "this GPU has no native bfloat16"
    if device.type == "cpu":
        return _cpu_native_bfloat16()
    return False, f"no native bfloat16 known for device {device.type!r}"


def resolve_precision(precision: str, device) -> tuple[str, str]:
    """The precision to run (``"float32"`` or ``"bfloat16"``) and why, in words.

    Parameters
    ----------
    precision : {"auto", "float32", "bfloat16"}
        ``"auto"``: bfloat16 where ``device`` computes it natively, float32 otherwise.
    device : torch.device

    Returns
    -------
    precision : str
    note : str
        For example ``"this CPU has no native bfloat16"``, or for an explicit
        bfloat16 on such a CPU a warning that it is emulated and slow.

    Examples
    --------
    >>> import torch
    >>> from amnetvid_sk.precision import resolve_precision
    >>> resolve_precision("float32", torch.device("cpu"))
    ('float32', 'as asked')
    """
    if precision not in PRECISIONS:
        raise ParameterError(
            f"The 'precision' parameter must be a str among {allowed_values(PRECISIONS)}. Got {precision!r} instead."
        )
    if precision == "float32":
        return "float32", "as asked"
    native, why = native_bfloat16(device)
    if precision == "auto":
        return ("bfloat16" if native else "float32"), why
    if native:
        return "bfloat16", "as asked"
    return "bfloat16", f"as asked; {why}, {EMULATED}"
