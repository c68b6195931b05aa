"""The pipeline of a model file as a tree of JSON nodes: what is saved, and how it is rebuilt.

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
anything is imported. The file around the tree (safetensors, versions, checksum) is
:mod:`amnetvid_sk.model_files`.

Examples
--------
>>> from sklearn.linear_model import Ridge
>>> ridge = Ridge(alpha=2.0).fit([[0.0], [1.0]], [0.0, 1.0])
>>> enc = Encoder()
>>> node = enc.encode(ridge, "pipeline")
>>> node["class"], node["params"]["alpha"], sorted(enc.arrays)
('sklearn.linear_model._ridge:Ridge', 2.0, ['pipeline.coef_'])
>>> Decoder(enc.arrays, device=None).decode(node).predict([[2.0]]) == ridge.predict([[2.0]])
array([ True])
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import types
from pathlib import Path

import numpy as np

from .errors import ModelFileError

__all__ = ["ALLOWED_PREFIXES", "DTYPE_CODES", "Decoder", "Encoder"]

#: the packages whose classes and functions a model file may name
ALLOWED_PREFIXES = ("amnetvid_sk", "sklearn", "skorch", "torch.nn", "torch.optim", "torch.utils.data")

#: numpy dtype -> safetensors dtype name, for the arrays a model file holds
DTYPE_CODES = {np.dtype(v): k for k, v in {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8",
                                            "I32": "<i4", "I16": "<i2", "I8": "|i1", "U64": "<u8",
                                            "U32": "<u4", "U16": "<u2", "U8": "|u1", "BOOL": "|b1"}.items()}
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


class Encoder:
    """Python objects to JSON nodes; arrays go to ``self.arrays`` under the path where they sit."""

    def __init__(self):
        self.arrays: dict[str, tuple[str, np.ndarray]] = {}  # name -> (safetensors dtype, array)

    def _array(self, where: str, arr: np.ndarray, kind: str, code: str | None = None) -> dict:
        arr = arr if code else arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        self.arrays[where] = (code or DTYPE_CODES[arr.dtype], np.ascontiguousarray(arr))
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
            if obj.dtype.kind in "biuf" and obj.dtype.newbyteorder("<") in DTYPE_CODES:
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


class Decoder:
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

