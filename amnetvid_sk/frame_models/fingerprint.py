"""Fingerprints: the feature store's cache key of a frame model, and the hashes it is made of.

A fingerprint names everything that changes a frame model's outputs (weights,
preprocessing, map derivation, map size or scores only, embedding size, numeric
precision), so that features of two different models never mix in one store. The
format is given in :func:`make_fingerprint`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import ParameterError, allowed_values
from .outputs import MAPS_MODES

__all__ = ["make_fingerprint", "hash_state_dict", "hash_file"]

_FINGERPRINT_HASH_CHARS = 12


def hash_state_dict(state_dict) -> str:
    """SHA-256 (hex) of a state dict's content: key names, dtypes, shapes and values.

    ``num_batches_tracked`` buffers are left out: the published AMNet files
    (PyTorch 0.3) have none, and they never change a prediction. The hash does
    not depend on the file format the weights came from (zip or legacy pickle).

    Parameters
    ----------
    state_dict : mapping of str to torch.Tensor

    Returns
    -------
    str
        64 hexadecimal characters.

    Examples
    --------
    >>> import torch
    >>> from amnetvid_sk.frame_models import hash_state_dict
    >>> len(hash_state_dict({"w": torch.zeros(2)}))
    64
    """
    import torch  # here: make_fingerprint and hash_file need no torch

    h = hashlib.sha256()
    for key in sorted(state_dict):
        if key.endswith("num_batches_tracked"):
            continue
        tensor = state_dict[key].detach().to("cpu").contiguous()
        h.update(key.encode())
        h.update(f"|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # A bytes view works for every dtype, bfloat16 included (numpy has no bfloat16).
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


_FILE_HASHES: dict[tuple, str] = {}


def hash_file(path) -> str:
    """SHA-256 (hex) of a file's bytes, cached per (path, size, mtime) for the process.

    Examples
    --------
    >>> import tempfile, os
    >>> from amnetvid_sk.frame_models import hash_file
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "x.bin")
    ...     _ = open(p, "wb").write(b"abc")
    ...     hash_file(p)[:8]
    'ba7816bf'
    """
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _FILE_HASHES.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        digest = _FILE_HASHES[key] = h.hexdigest()
    return digest


def make_fingerprint(name: str, weights_sha256: str, preprocessing: str, map_shape, bfloat16: bool,
                     extra: str = "", *, maps: str = "attention", embedding_dim: int = 0) -> str:
    """The fingerprint string of a frame model: the feature store's cache key.

    Format: ``{name}.w-{hash12}.pre-{preprocessing}[.{extra}].{maps part}[.emb-{D}].{fp32|bf16}``,
    where the maps part is ``maps-{K}x{h}x{w}`` for a model that gives attention maps and
    ``maps-none`` for one that gives scores only (``maps="none"``: never the same string, so
    scores-only features never mix with map extractions in a store), and ``.emb-{D}`` names
    the size of the per-frame embedding the model gives (left out when it gives none,
    ``embedding_dim=0``, so that the fingerprints of models without embeddings keep their form).
    For example ``amnet.w-3f2a9c0d11be.pre-224sq-imagenet.maps-3x14x14.emb-1024.fp32`` or
    ``resmem.w-61c3e2a0b7d4.pre-256sq-crop227.maps-none.emb-2048.fp32``.
    It uses only ``[a-z0-9.-]``, so it is safe in file names and SQL literals, and it always
    ends in the precision tag. Any change of weights (first 12 hex digits of their SHA-256),
    preprocessing, map derivation (``extra``), map size, maps mode, embedding size or numeric
    mode gives another string.

    Parameters
    ----------
    name : str
        Frame model name, e.g. ``"amnet"``.
    weights_sha256 : str
        Hex digest of the weights (see :func:`hash_state_dict`, :func:`hash_file`).
    preprocessing : str
        Short tag describing the input preprocessing.
    map_shape : tuple of int
        ``(K, h, w)``.
    bfloat16 : bool
        Whether bfloat16 autocast is on (outputs differ slightly from float32).
    extra : str, default=""
        Anything else that changes the outputs (e.g. Grad-CAM layers).
    maps : {"attention", "none"}, default="attention"
        Whether the model gives attention maps or scores only.
    embedding_dim : int, default=0
        Size of the per-frame embedding; 0: none.

    Returns
    -------
    str

    Examples
    --------
    >>> from amnetvid_sk.frame_models import make_fingerprint
    >>> make_fingerprint("amnet", "ab" * 32, "224sq-imagenet", (3, 14, 14), False)
    'amnet.w-abababababab.pre-224sq-imagenet.maps-3x14x14.fp32'
    >>> make_fingerprint("amnet", "ab" * 32, "224sq-imagenet", (3, 14, 14), False, maps="none", embedding_dim=1024)
    'amnet.w-abababababab.pre-224sq-imagenet.maps-none.emb-1024.fp32'
    """
    if maps not in MAPS_MODES:
        raise ParameterError(f"The 'maps' parameter of make_fingerprint must be a str among "
                             f"{allowed_values(MAPS_MODES)}. Got {maps!r} instead.")
    parts = [name, f"w-{weights_sha256[:_FINGERPRINT_HASH_CHARS]}", f"pre-{preprocessing}"]
    if extra:
        parts.append(extra)
    parts.append("maps-none" if maps == "none" else "maps-" + "x".join(str(int(s)) for s in map_shape))
    if int(embedding_dim) > 0:
        parts.append(f"emb-{int(embedding_dim)}")
    parts.append("bf16" if bfloat16 else "fp32")
    return ".".join(parts)
