"""Fitted models saved as data: a model file holds no code, and loading one runs none.

The file is a safetensors file (written and read by the ``safetensors`` library): the arrays,
and string metadata that holds ``format`` (``"amnetvid-sk model"``), ``format_version``,
``amnetvid_sk_version``, ``bfloat16`` (the names of tensors kept as their bfloat16 bits, which
numpy cannot hold), ``sha256`` (of the description and the arrays' bytes: a cut or garbled
file is refused as damaged) and
``model``, a JSON description: the versions of scikit-learn, skorch, torch and numpy, the
recipe (``{"name", "path"}``: a shipped one by name, a user's by its path; recorded for
people, never run), the frame-model fingerprint and sampling of the reader step (its
``model_`` and ``sampling_``), what it was trained on (``target``: ``"short"`` or ``"long"``,
``n_videos``, ``label_range``: ``[min, max]`` of the training labels; null where not given, and
read as null where a file lacks them) and the pipeline, a tree of JSON
nodes (see :mod:`amnetvid_sk.model_nodes`), which names classes only from
:data:`ALLOWED_PREFIXES`. :func:`~amnetvid_sk.model_sources.read_model_file` refuses pickles unless
``allow_pickle=True``.

Versions: a file loads if its format version is at most :data:`FORMAT_VERSION` and it was written by
an amnetvid-sk of this major.minor (a minor release may change the classes' parameters and fitted
attributes). Otherwise a ModelFileError names both versions. What ``amnetvid predict`` accepts besides
(a trusted pickle) is :mod:`amnetvid_sk.model_sources`'.

Not ``skops.io``: it has no handler for torch tensors (0.16 fails on a bare one), and loading a
fitted skorch net needs ~20 types trusted, ``builtins.print``, ``functools.partial`` and torch's optimisers among them.

Examples
--------
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> from sklearn.linear_model import RidgeCV
>>> pipe = make_pipeline(StandardScaler(), RidgeCV()).fit([[0.0], [1.0], [3.0]], [0.1, 0.3, 0.6])
>>> save_model(pipe, "ridge.safetensors")
>>> load_model("ridge.safetensors").predict([[2.0]]) == pipe.predict([[2.0]])
array([ True])
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .atomic_files import write_file_atomic
from .errors import ModelFileError, ParameterError, allowed_values
from .model_nodes import ALLOWED_PREFIXES, DTYPE_CODES, Decoder, Encoder

__all__ = ["ALLOWED_PREFIXES", "FORMAT_NAME", "FORMAT_VERSION", "TRAINING_FIELDS", "existing_model_path",
           "load_model", "model_file_info", "save_model"]

FORMAT_NAME = "amnetvid-sk model"
#: the version of the layout described in the module docstring; a reader reads 1..FORMAT_VERSION
FORMAT_VERSION = 1
#: what a model file records of its training data; None where unknown (not given, or not in the file)
TRAINING_FIELDS = ("target", "n_videos", "label_range")


def _recipe_ref(recipe) -> dict | None:
    """``{"name", "path"}`` of a recipe: path None for a shipped one (or a name found nowhere)."""
    if recipe is None:
        return None
    from .pipelines import recipe_dirs

    text = os.fspath(getattr(recipe, "__file__", None) or recipe)  # a module from load_recipe: its file
    path = Path(text)
    if not path.suffix:  # a name finds ./pipelines/NAME.py first, then the shipped one, as load_recipe does
        path = next((d / f"{text}.py" for d in recipe_dirs() if (d / f"{text}.py").is_file()), None)
    shipped = path is None or path.resolve().parent == recipe_dirs()[-1].resolve()
    return {"name": Path(text).stem, "path": None if shipped else str(path.resolve())}


def _versions() -> dict:
    found = {name: getattr(sys.modules.get(name), "__version__", None) for name in ("sklearn", "skorch", "torch")}
    return {"numpy": np.__version__, **found}


def _digest(doc_text: str, arrays: dict) -> str:
    """sha256 of the description and the arrays' bytes, in name order: what a damaged file fails."""
    digest = hashlib.sha256(doc_text.encode())
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name][1]).tobytes())
    return digest.hexdigest()


def _write(path: Path, doc_text: str, arrays: dict) -> None:
    """A safetensors file (the library's own format), under a temporary name renamed once synced:
    never half a file. Serialised in memory and written here: the library's own file writer
    reports a full disk as a SafetensorError without errno; this one raises DiskFullError."""
    from safetensors.numpy import save

    # numpy has no bfloat16: such tensors travel as their uint16 bits, their dtype kept here
    bf16 = sorted(name for name, (code, _) in arrays.items() if code == "BF16")
    meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION), "amnetvid_sk_version": __version__,
            "model": doc_text, "bfloat16": json.dumps(bf16), "sha256": _digest(doc_text, arrays)}
    data = save({name: arr for name, (_, arr) in arrays.items()}, metadata=meta)
    write_file_atomic(path, data, "model file")


def _training(target, y) -> dict:
    """The :data:`TRAINING_FIELDS` of a description: the target, and the count and range of the labels."""
    from .pipelines import TARGETS

    if target is not None and target not in TARGETS:
        raise ParameterError(f"The 'target' parameter of save_model must be a str among {allowed_values(TARGETS)} "
                             f"or None. Got {target!r} instead.")
    if y is None:
        return {"target": target, "n_videos": None, "label_range": None}
    try:
        labels = np.asarray(y, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        labels = np.array([np.nan])
    if labels.size == 0 or not np.isfinite(labels).all():
        raise ParameterError("The 'y' parameter of save_model must be the training labels, a non-empty array of "
                             f"finite numbers, or None. Got {np.asarray(y, dtype=object).ravel()[:5]!r} instead.")
    return {"target": target, "n_videos": int(labels.size), "label_range": [float(labels.min()), float(labels.max())]}


def save_model(pipeline, path, *, recipe=None, target=None, y=None) -> None:
    """Save a fitted pipeline (or any fitted estimator) as data, in one file (see the module docstring).

    Parameters
    ----------
    pipeline : fitted estimator
    path : str or Path
        The file to write, in an existing folder.
    recipe : str, Path or module, default=None
        The recipe the pipeline came from (a shipped name, or a recipe file), recorded in the file.
    target : {"short", "long"}, default=None
        The memorability target it was trained for, recorded in the file (``amnetvid predict
        --format mediaeval`` puts one MODEL's predictions under it); None: not recorded.
    y : array-like of float, default=None
        The labels it was trained on: their count (``n_videos``) and ``label_range`` (min, max)
        are recorded (``amnetvid predict`` warns about a model trained on few videos); None: not recorded.

    Raises
    ------
    ModelFileError
        The pipeline is not fitted, or holds something a model file cannot hold as data (a
        class from outside :data:`ALLOWED_PREFIXES`, for one); nothing is written.
    ValueError
        ``target`` is not a target, or ``y`` is not a non-empty array of finite numbers; nothing is written.
    DiskFullError
        The disk filled up: no file (nor a temporary one) is left, a file there before is kept.

    Examples
    --------
    >>> from sklearn.dummy import DummyRegressor
    >>> save_model(DummyRegressor().fit([[0.0], [1.0]], [0.2, 0.4]), "dummy.safetensors", recipe="mean_score")
    >>> load_model("dummy.safetensors").predict([[5.0]])
    array([0.3])
    >>> model_file_info("dummy.safetensors")["recipe"]
    {'name': 'mean_score', 'path': None}

    What it was trained on, when given:

    >>> save_model(DummyRegressor().fit([[0.0], [1.0]], [0.2, 0.4]), "dummy.safetensors", target="short",
    ...            y=[0.2, 0.4])
    >>> info = model_file_info("dummy.safetensors")
    >>> info["target"], info["n_videos"], info["label_range"]
    ('short', 2, [0.2, 0.4])
    """
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    from .pipelines import reader_step

    training = _training(target, y)
    path = Path(path)
    if not path.parent.is_dir():
        raise ModelFileError(f"cannot save the model to {str(path)!r}: the folder {str(path.parent)!r} does not exist")
    try:
        check_is_fitted(pipeline)
    except (NotFittedError, TypeError) as e:
        raise ModelFileError(f"cannot save the model to {str(path)!r}: {e}") from None
    try:
        reader = reader_step(pipeline)[1] if hasattr(pipeline, "steps") else None
    except ValueError:  # a pipeline on arrays: no store, no frame model
        reader = None
    enc = Encoder()
    doc = {"versions": _versions(), "recipe": _recipe_ref(recipe), "frame_model": getattr(reader, "model_", None),
           "sampling": getattr(reader, "sampling_", None), **training, "pipeline": enc.encode(pipeline, "pipeline")}
    _write(path, json.dumps(doc, separators=(",", ":")), enc.arrays)


def existing_model_path(path) -> Path:
    """``path`` as a Path, refused (ModelFileError) unless it is a file."""
    p = Path(path)
    if not p.is_file():
        what = "is a folder" if p.is_dir() else "does not exist"
        raise ModelFileError(f"model file {str(p)!r} {what}; give a file saved by `amnetvid fit` or save_model")
    return p


def _read(path) -> tuple[dict, dict, Path]:
    """The description and the arrays of a model file, after the format, version and checksum checks."""
    from safetensors import SafetensorError, safe_open

    p = existing_model_path(path)
    damaged = f"the model file {str(p)!r} is damaged (cut short or garbled)"
    try:
        with safe_open(str(p), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise ModelFileError(f"{damaged}: {' '.join(str(e).split())}; save it again") from None
    if meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{str(p)!r} is a safetensors file but not an amnetvid-sk model file (no "
                             f"'format': {FORMAT_NAME!r} in its metadata)")
    written, version = str(meta.get("amnetvid_sk_version")), str(meta.get("format_version"))
    if not version.isdigit() or not 1 <= int(version) <= FORMAT_VERSION:
        raise ModelFileError(f"the model file {str(p)!r} has format version {version} (written by amnetvid-sk "
                             f"{written}); amnetvid-sk {__version__} reads format versions 1 to {FORMAT_VERSION}")
    theirs = re.match(r"(\d+)\.(\d+)", written)
    if theirs is None or theirs.groups() != re.match(r"(\d+)\.(\d+)", __version__).groups():
        raise ModelFileError(
            f"the model file {str(p)!r} was written by amnetvid-sk {written}, this is amnetvid-sk {__version__}: "
            "model files load only into the same major.minor version; install that version, or fit again")
    try:
        bf16 = set(json.loads(meta.get("bfloat16", "[]")))
        arrays = {name: ("BF16" if name in bf16 else DTYPE_CODES[arr.dtype], arr.copy())
                  for name, arr in tensors.items()}
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{damaged}: {e}") from None
    if _digest(str(meta.get("model")), arrays) != meta.get("sha256"):
        raise ModelFileError(f"{damaged}: its checksum does not match; save it again")
    return json.loads(meta["model"]), arrays, p


def model_file_info(path) -> dict:
    """What a model file records besides the pipeline: versions, recipe, frame model, sampling and
    the :data:`TRAINING_FIELDS` (each None where unknown: not given to :func:`save_model`, or not in the file).

    Examples
    --------
    >>> from sklearn.dummy import DummyRegressor
    >>> save_model(DummyRegressor().fit([[0.0]], [0.5]), "dummy.safetensors")
    >>> {k: model_file_info("dummy.safetensors")[k] for k in TRAINING_FIELDS}
    {'target': None, 'n_videos': None, 'label_range': None}
    """
    doc, _, _ = _read(path)
    return {**dict.fromkeys(TRAINING_FIELDS), **{k: v for k, v in doc.items() if k != "pipeline"}}


def load_model(path, *, device=None):
    """Rebuild the fitted pipeline saved by :func:`save_model` (same predictions); no code comes from the file.

    Parameters
    ----------
    path : str or Path
    device : str, default=None
        Where skorch nets go; None: the device they were saved on, or the CPU where that is missing.

    Raises
    ------
    ModelFileError
        The file is missing, damaged, no model file, of an incompatible version, or names a
        class outside :data:`ALLOWED_PREFIXES` (refused before anything is imported).

    Examples
    --------
    >>> from sklearn.dummy import DummyRegressor
    >>> save_model(DummyRegressor().fit([[0.0]], [0.5]), "dummy.safetensors")
    >>> load_model("dummy.safetensors", device="cpu").predict([[1.0]])
    array([0.5])
    """
    doc, arrays, p = _read(path)
    try:
        return Decoder(arrays, device).decode(doc["pipeline"])
    except ModelFileError as e:
        raise ModelFileError(f"cannot load the model file {str(p)!r}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ModelFileError(f"the model file {str(p)!r} holds a malformed pipeline description "
                             f"({type(e).__name__}: {e})") from None
