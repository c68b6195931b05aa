"""Where ``amnetvid predict`` takes a fitted pipeline from: a model file (data, see
:mod:`amnetvid_sk.model_files`), or, only when asked, a trusted pickle or joblib file.
"""

from __future__ import annotations

import struct

from .errors import ModelFileError
from .model_files import existing_model_path, load_model

__all__ = ["read_model_file"]

_MAX_HEADER = 100_000_000  # the safetensors limit
# pickle protocols 2-5 start with PROTO (0x80); joblib's compressed files with zlib/gzip/bz2/xz/lzma/lz4 magic
_PICKLE_MAGIC = (b"\x80", b"\x78", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b"\x04\x22\x4d\x18")
_PICKLE_SUFFIXES = {".joblib", ".pkl", ".pickle", ".jl", ".sav"}


def read_model_file(path, *, allow_pickle: bool = False):
    """The fitted pipeline in ``path`` for ``amnetvid predict``: a model file, or a trusted pickle.

    ``allow_pickle=True`` (``--allow-pickle``) also loads pickle and joblib files, which run whatever
    code their author put in them: only for files you trust. Raises ModelFileError (see :func:`load_model`).

    Examples
    --------
    >>> import pickle
    >>> with open("model.pkl", "wb") as f:
    ...     pickle.dump({"not": "a model"}, f)
    >>> read_model_file("model.pkl")
    Traceback (most recent call last):
    ...
    amnetvid_sk.errors.ModelFileError: 'model.pkl' is a pickle (joblib) file...
    """
    p = existing_model_path(path)
    with open(p, "rb") as f:
        start = f.read(9)
    if start[8:9] == b"{" and struct.unpack("<Q", start[:8])[0] <= _MAX_HEADER:  # a safetensors header
        pipeline = load_model(p)
    elif not allow_pickle:
        if start.startswith(_PICKLE_MAGIC) or p.suffix.lower() in _PICKLE_SUFFIXES:
            raise ModelFileError(
                f"{str(p)!r} is a pickle (joblib) file, and loading a pickle can run any code its author put "
                "in it, so it is not opened by default; for a file you trust, pass --allow-pickle "
                "(read_model_file(..., allow_pickle=True)); better, save the model again as data with "
                "`amnetvid fit --out` or amnetvid_sk.save_model")
        raise ModelFileError(f"{str(p)!r} is not an amnetvid-sk model file; give a file saved by "
                             "`amnetvid fit --out` or amnetvid_sk.save_model")
    else:
        import joblib

        try:
            pipeline = joblib.load(p)
        except Exception as e:  # any failure to unpickle means: not a model file
            raise ModelFileError(f"cannot read the pickle file {str(p)!r} ({type(e).__name__}: {e})") from None
    if not (hasattr(pipeline, "steps") and hasattr(pipeline, "predict")):
        raise ModelFileError(f"model file {str(p)!r} holds a {type(pipeline).__name__}, not a fitted pipeline; "
                             "give a file saved by `amnetvid fit`")
    return pipeline
