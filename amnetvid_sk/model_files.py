"""Fitted models saved as data: a model file holds no code, and loading one runs none.

The file is a safetensors file (written and read by the ``safetensors`` library): the arrays,
and string metadata that holds ``format`` (``"amnetvid-sk model"``), ``format_version``,
``amnetvid_sk_version``, ``bfloat16`` (the names of tensors kept as their bfloat16 bits, which
numpy cannot hold), ``sha256`` (of the description and the arrays' bytes: a cut or garbled
file is refused as damaged) and
``model``, a JSON description: the versions of scikit-learn, skorch, torch and numpy, the
recipe (``{"name", "path"}``: a shipped one by name, a user's by its path; recorded for
people, never run), the frame-model fingerprint and sampling of the reader step (its
``model_`` and ``sampling_``) and the pipeline, a tree of JSON nodes.

An estimator node names its class by import path (``"sklearn.linear_model._ridge:RidgeCV"``)
and holds ``get_params(deep=False)`` (nested estimators recursively) and its fitted state:
the other attributes of ``vars(estimator)`` (those ending in ``_``, and private ones such as
a StackingRegressor's ``_n_feature_outs``). Numbers, strings, lists and dicts are JSON;
numpy arrays and torch tensors are arrays of the file, named by where they sit
(``pipeline.steps[1][1].coef_``). A fitted skorch net holds its history and each module's
``state_dict``; loading calls ``initialize()`` (on the saved device, or the CPU where that
is missing) and loads the weights. The optimizer's state is not kept: a loaded net predicts.

Classes and functions are named only from :data:`ALLOWED_PREFIXES` (``torch.utils.data`` for
skorch's ``DataLoader``): another name is refused when saving, and in a crafted file before
anything is imported. :func:`read_model_file` refuses pickles unless ``allow_pickle=True``.

Versions: a file loads if its format version is at most :data:`FORMAT_VERSION` and it was written by
an amnetvid-sk of this major.minor (a minor release may change the classes' parameters and fitted
attributes). Otherwise a ModelFileError names both versions.

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
import importlib
import inspect
import json
import os
import re
import struct
import sys
import types
from pathlib import Path

import numpy as np

from . import __version__
from .atomic_files import write_file_atomic
from .errors import ModelFileError

__all__ = ["ALLOWED_PREFIXES", "FORMAT_NAME", "FORMAT_VERSION", "load_model", "model_file_info",
           "read_model_file", "save_model"]

FORMAT_NAME = "amnetvid-sk model"
#: the version of the layout described in the module docstring; a reader reads 1..FORMAT_VERSION
FORMAT_VERSION = 1
#: the packages whose classes and functions a model file may name
ALLOWED_PREFIXES = ("amnetvid_sk", "sklearn", "skorch", "torch.nn", "torch.optim", "torch.utils.data")

_CODES = {np.dtype(v): k for k, v in {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                                       "I16": "<i2", "I8": "|i1", "U64": "<u8", "U32": "<u4", "U16": "<u2",
                                       "U8": "|u1", "BOOL": "|b1"}.items()}
_MAX_HEADER = 100_000_000  # the safetensors limit
# pickle protocols 2-5 start with PROTO (0x80); joblib's compressed files with zlib/gzip/bz2/xz/lzma/lz4 magic
_PICKLE_MAGIC = (b"\x80", b"\x78", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b"\x04\x22\x4d\x18")
_PICKLE_SUFFIXES = {".joblib", ".pkl", ".pickle", ".jl", ".sav"}
_NET_SKIP = {"callbacks_", "init_context_", "initialized_", "virtual_params_"}  # rebuilt by initialize()


def _allowed(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in ALLOWED_PREFIXES)


def _resolve(path, where: str):
    """The class or function ``"module:qualname"`` names, imported only if its module is allowed."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise ModelFileError(f"{where}: {path!r} is not a 'module:name' class or function name")
    module, qualname = path.split(":")
    parts = qualname.split(".")
    if not _allowed(module) or any(not p.isidentifier() or p.startswith("__") for p in [*module.split("."), *parts]):
        raise ModelFileError(
            f"{where}: {path!r} is outside the packages a model file may name ({', '.join(ALLOWED_PREFIXES)}); "
            "refused, nothing was imported")
    try:
        obj = importlib.import_module(module)
        for p in parts:
            obj = getattr(obj, p)
    except (ImportError, AttributeError) as e:
        raise ModelFileError(f"{where}: {path!r} cannot be found here ({e})") from None
    if getattr(obj, "__module__", None) != module or getattr(obj, "__qualname__", None) != qualname:
        raise ModelFileError(f"{where}: {path!r} is not a class or function defined there")
    return obj


def _name_of(obj, where: str) -> str:
    path = f"{getattr(obj, '__module__', None)}:{getattr(obj, '__qualname__', None)}"
    if not _allowed(str(getattr(obj, "__module__", None))):
        raise ModelFileError(
            f"cannot save {where}: {path} is outside the packages a model file may name "
            f"({', '.join(ALLOWED_PREFIXES)}), so loading it would run code from elsewhere (a class of a "
            "recipe file cannot be saved as data)")
    if _resolve(path, f"cannot save {where}") is not obj:
        raise ModelFileError(f"cannot save {where}: {path} does not import as the same object")
    return path


def _instance(obj, package: str, name: str) -> bool:  # without importing a package nobody imported yet
    module = sys.modules.get(package)
    return module is not None and isinstance(obj, getattr(module, name))


class _Encoder:
    """Python objects to JSON nodes; arrays go to ``self.arrays`` under the path where they sit."""

    def __init__(self):
        self.arrays: dict[str, tuple[str, np.ndarray]] = {}  # name -> (safetensors dtype, array)

    def _array(self, where: str, arr: np.ndarray, kind: str, code: str | None = None) -> dict:
        arr = arr if code else arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        self.arrays[where] = (code or _CODES[arr.dtype], np.ascontiguousarray(arr))
        return {"$": kind, "tensor": where}

    def encode(self, obj, where: str):
        if obj is None or type(obj) in (bool, int, float, str):
            return obj
        if type(obj) is list:
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if type(obj) is tuple:
            return {"$": "tuple", "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if isinstance(obj, np.generic) and obj.dtype.kind in "biuf":
            return {"$": "scalar", "dtype": obj.dtype.str, "value": obj.item()}
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind in "biuf" and obj.dtype.newbyteorder("<") in _CODES:
                return self._array(where, obj, "array")
            if obj.dtype.kind in "OU" and all(isinstance(v, str) for v in obj.flat):
                return {"$": "strarray", "dtype": obj.dtype.str, "shape": obj.shape, "items": obj.ravel().tolist()}
        if _instance(obj, "torch", "Tensor"):
            torch = sys.modules["torch"]
            t = obj.detach().cpu().contiguous()
            if t.dtype == torch.bfloat16:  # no numpy dtype: its bits as uint16, marked BF16
                return self._array(where, t.view(torch.int16).numpy().view(np.uint16), "tensor", "BF16")
            return self._array(where, t.numpy(), "tensor")
        if isinstance(obj, np.dtype) or (isinstance(obj, type) and issubclass(obj, np.generic)):
            return {"$": "dtype", "value": np.dtype(obj).str, "as_type": isinstance(obj, type)}
        if isinstance(obj, Path):  # a store folder given as a Path: kept as one
            return {"$": "path", "value": os.fspath(obj)}
        if type(obj).__name__ == "device" and type(obj).__module__ == "torch":
            return {"$": "device", "value": str(obj)}
        if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
            return {"$": "class" if isinstance(obj, type) else "function", "path": _name_of(obj, where)}
        if isinstance(obj, dict):
            node = {"$": "dict", "items": [[self.encode(k, f"{where}.key"), self.encode(v, f"{where}[{k!r}]")]
                                           for k, v in obj.items()]}
            return node if type(obj) is dict else {**node, "class": _name_of(type(obj), where)}
        if isinstance(obj, list):
            return {"$": "list", "class": _name_of(type(obj), where),
                    "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if hasattr(obj, "state_dict") and not hasattr(obj, "get_params"):  # a torch module or optimizer
            raise ModelFileError(f"cannot save {where}: a {type(obj).__name__} instance as a parameter; give "
                                 "the class and its module__* parameters, so the weights are saved as data")
        if hasattr(obj, "get_params"):
            return self._estimator(obj, where)
        return self._object(obj, where)

    def _estimator(self, est, where: str) -> dict:
        params = est.get_params(deep=False)
        node = {"$": "estimator", "class": _name_of(type(est), where),
                "params": {k: self.encode(v, f"{where}.{k}") for k, v in params.items()}}
        if _instance(est, "skorch", "NeuralNet"):
            state = {}
            if getattr(est, "initialized_", False):
                owned = [*est._modules, *est._criteria]
                skip = _NET_SKIP | {f"{n}_" for n in (*owned, *est._optimizers)}
                state = {k: v for k, v in vars(est).items() if k not in {*params, *skip} and k[0] != "_"}
                node["weights"] = {n: {k: self.encode(t, f"{where}.{n}_.{k}")
                                       for k, t in getattr(est, f"{n}_").state_dict().items()} for n in owned}
        else:
            state = {k: v for k, v in vars(est).items() if k not in params}
        node["state"] = {k: self.encode(v, f"{where}.{k}") for k, v in state.items()}
        return node

    def _object(self, obj, where: str) -> dict:
        """A plain object (skorch's ValidSplit, say) rebuilt from its ``__init__`` arguments."""
        cls = type(obj)
        try:
            names = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                     if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            extra = sorted(set(vars(obj)) - set(names))
        except (TypeError, ValueError):  # a builtin type (a numpy ufunc, say): nothing to rebuild it from
            names, extra = [], ["(no __dict__)"]
        missing = [n for n in names if not hasattr(obj, n)]
        if missing or extra:
            raise ModelFileError(f"cannot save {where}: a {cls.__module__}.{cls.__qualname__} is not data a model "
                                 f"file can hold (__init__ arguments {missing} not kept, or {extra} kept besides)")
        return {"$": "object", "class": _name_of(cls, where),
                "init": {n: self.encode(getattr(obj, n), f"{where}.{n}") for n in names}}


class _Decoder:
    def __init__(self, arrays: dict, device):
        self.arrays, self.device = arrays, device

    def decode(self, node, where: str = "pipeline"):
        if node is None or type(node) in (bool, int, float, str):
            return node
        if type(node) is list:
            return [self.decode(v, f"{where}[{i}]") for i, v in enumerate(node)]
        kind = node["$"]
        items = lambda: [self.decode(v, f"{where}[{i}]") for i, v in enumerate(node["items"])]  # noqa: E731
        if kind == "tuple":
            return tuple(items())
        if kind == "scalar":
            return np.dtype(node["dtype"]).type(node["value"])
        if kind in ("array", "tensor"):
            code, arr = self.arrays[node["tensor"]]
            if kind == "array":
                return arr
            torch = importlib.import_module("torch")
            t = torch.from_numpy(arr)
            return t.view(torch.bfloat16) if code == "BF16" else t
        if kind == "strarray":
            return np.array(node["items"], dtype=node["dtype"]).reshape(node["shape"])
        if kind == "dtype":
            return np.dtype(node["value"]).type if node["as_type"] else np.dtype(node["value"])
        if kind == "path":
            return Path(node["value"])
        if kind == "device":
            return importlib.import_module("torch").device(node["value"])
        if kind in ("class", "function"):
            obj = _resolve(node["path"], where)
            if isinstance(obj, type) != (kind == "class"):
                raise ModelFileError(f"{where}: {node['path']!r} is not a {kind}")
            return obj
        if kind == "dict":
            pairs = [(self.decode(k, where), self.decode(v, f"{where}[{k!r}]")) for k, v in node["items"]]
            # keywords: sklearn's Bunch takes no positional argument
            return self._build(node["class"], where, lambda cls: cls(**dict(pairs))) if "class" in node else dict(pairs)
        if kind == "list":
            return self._build(node["class"], where, lambda cls: cls(items()))
        if kind == "object":
            init = {k: self.decode(v, f"{where}.{k}") for k, v in node["init"].items()}
            return self._build(node["class"], where, lambda cls: cls(**init))
        if kind == "estimator":
            return self._estimator(node, where)
        raise ModelFileError(f"{where}: unknown node kind {kind!r}")

    def _build(self, path, where, make):
        cls = _resolve(path, where)
        if not isinstance(cls, type):
            raise ModelFileError(f"{where}: {path!r} is not a class")
        try:
            return make(cls)
        except Exception as e:  # a crafted file may give any arguments: one error naming the place
            raise ModelFileError(f"{where}: cannot rebuild {path} ({type(e).__name__}: {e})") from None

    def _estimator(self, node, where):
        params = {k: self.decode(v, f"{where}.{k}") for k, v in node["params"].items()}
        est = self._build(node["class"], where, lambda cls: cls(**params))
        if "weights" in node:
            torch = importlib.import_module("torch")
            device = est.device if self.device is None else self.device
            if str(device).startswith("cuda") and not torch.cuda.is_available():
                device = "cpu"  # as skorch does for a net pickled on a GPU
            est.set_params(device=device)
            with torch.random.fork_rng(devices=[]):  # the throwaway initial weights use no global seed
                est.initialize()
            for name, tensors in node["weights"].items():
                state = {k: self.decode(v, f"{where}.{name}_.{k}") for k, v in tensors.items()}
                getattr(est, f"{name}_").load_state_dict(state)
        for k, v in node["state"].items():
            if k.startswith("__"):  # __class__, __dict__: not fitted state, whatever a crafted file says
                raise ModelFileError(f"{where}: {k!r} is not a fitted attribute")
            setattr(est, k, self.decode(v, f"{where}.{k}"))
        return est


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


def save_model(pipeline, path, *, recipe=None) -> None:
    """Save a fitted pipeline (or any fitted estimator) as data, in one file (see the module docstring).

    Parameters
    ----------
    pipeline : fitted estimator
    path : str or Path
        The file to write, in an existing folder.
    recipe : str, Path or module, default=None
        The recipe the pipeline came from (a shipped name, or a recipe file), recorded in the file.

    Raises
    ------
    ModelFileError
        The pipeline is not fitted, or holds something a model file cannot hold as data (a
        class from outside :data:`ALLOWED_PREFIXES`, for one); nothing is written.
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
    """
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    from .pipelines import reader_step

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
    enc = _Encoder()
    doc = {"versions": _versions(), "recipe": _recipe_ref(recipe), "frame_model": getattr(reader, "model_", None),
           "sampling": getattr(reader, "sampling_", None), "pipeline": enc.encode(pipeline, "pipeline")}
    _write(path, json.dumps(doc, separators=(",", ":")), enc.arrays)


def _existing(path) -> Path:
    p = Path(path)
    if not p.is_file():
        what = "is a folder" if p.is_dir() else "does not exist"
        raise ModelFileError(f"model file {str(p)!r} {what}; give a file saved by `amnetvid fit` or save_model")
    return p


def _read(path) -> tuple[dict, dict, Path]:
    """The description and the arrays of a model file, after the format, version and checksum checks."""
    from safetensors import SafetensorError, safe_open

    p = _existing(path)
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
        arrays = {name: ("BF16" if name in bf16 else _CODES[arr.dtype], arr.copy()) for name, arr in tensors.items()}
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{damaged}: {e}") from None
    if _digest(str(meta.get("model")), arrays) != meta.get("sha256"):
        raise ModelFileError(f"{damaged}: its checksum does not match; save it again")
    return json.loads(meta["model"]), arrays, p


def model_file_info(path) -> dict:
    """What a model file records besides the pipeline: versions, recipe, frame model, sampling."""
    doc, _, _ = _read(path)
    return {k: v for k, v in doc.items() if k != "pipeline"}


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
        return _Decoder(arrays, device).decode(doc["pipeline"])
    except ModelFileError as e:
        raise ModelFileError(f"cannot load the model file {str(p)!r}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ModelFileError(f"the model file {str(p)!r} holds a malformed pipeline description "
                             f"({type(e).__name__}: {e})") from None


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
    p = _existing(path)
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
