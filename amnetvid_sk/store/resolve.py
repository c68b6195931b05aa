"""Which frame model and sampling a read means: fingerprints, names, prefixes, map shapes.

A :class:`Catalog` is what one listing of the store says about its models; it
is small, and the array cache (``cache.py``) keeps it beside the arrays so that
a read answered from the cache needs no DuckDB query at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import StoreError
from . import cache
from .connection import Connection, list_parts

__all__ = ["Catalog", "snapshot", "pick_model", "pick_sampling", "map_shapes"]

_FINGERPRINTS_SQL = """
    SELECT model, max(name) AS name, bool_or(extracted) AS extracted FROM (
        SELECT model, name, false AS extracted FROM models
        UNION ALL SELECT DISTINCT model, NULL, true FROM videos)
    GROUP BY model ORDER BY model"""


@dataclass
class Catalog:
    """The frame models of one listing of a store.

    Attributes
    ----------
    extracted : list of str
        Fingerprints with visible extractions, sorted.
    names : dict
        Fingerprint -> model name (None for extractions without a models row).
    shapes : dict
        Fingerprint -> map shape (a list of ints; ``[]`` for a scores-only model).
    dims : dict
        Fingerprint -> embedding size (0: the model stores no embeddings).
    samplings : dict
        Fingerprint -> sorted sampling keys of its visible extractions.

    Examples
    --------
    >>> Catalog.query(Connection(Path("/no/such/store"))).extracted
    []
    """

    extracted: list = field(default_factory=list)
    names: dict = field(default_factory=dict)
    shapes: dict = field(default_factory=dict)
    samplings: dict = field(default_factory=dict)
    dims: dict = field(default_factory=dict)

    @classmethod
    def query(cls, con: Connection, refresh: bool = True) -> "Catalog":
        """The catalog of the listing the connection's views show (``refresh`` lists again first)."""
        rows = con.query(_FINGERPRINTS_SQL, refresh=refresh).to_pylist()
        shapes = con.query("SELECT model, map_shape, embedding_dim FROM models", refresh=False).to_pylist()
        pairs = con.query("SELECT DISTINCT model, sampling FROM videos ORDER BY model, sampling",
                          refresh=False).to_pylist()
        samplings: dict = {}
        for r in pairs:
            samplings.setdefault(r["model"], []).append(r["sampling"])
        return cls([r["model"] for r in rows if r["extracted"]], {r["model"]: r["name"] for r in rows},
                   {r["model"]: list(r["map_shape"]) for r in shapes}, samplings,
                   {r["model"]: int(r["embedding_dim"] or 0) for r in shapes})

    def to_dict(self) -> dict:
        return asdict(self)

    def model(self, path: Path, model: str | None) -> str:
        """``FeatureStore.resolve_model`` on this catalog."""
        return pick_model(path, self.extracted, self.names, model)

    def sampling(self, path: Path, model: str, sampling: str | None) -> str:
        """``FeatureStore.resolve_sampling`` on this catalog, for a resolved ``model``."""
        return pick_sampling(path, model, self.samplings.get(model, []), sampling)

    def shape(self, model: str) -> tuple[int, ...]:
        """The map shape of a resolved ``model``; an error when it has no models row."""
        if model not in self.shapes:
            raise StoreError(f"frame model {model!r} has extractions but no models row; its map shape "
                             "is unknown")
        return tuple(self.shapes[model])

    def dim(self, model: str) -> int:
        """The embedding size of a resolved ``model`` (0: none)."""
        return int(self.dims.get(model, 0))


def pick_model(path: Path, extracted: list[str], names: dict[str, str], model: str | None) -> str:
    """The full fingerprint ``model`` means, among the fingerprints of one listing of the store.

    Parameters
    ----------
    path : Path
        The store folder (for messages).
    extracted : list of str
        Fingerprints with extracted videos.
    names : dict
        Fingerprint -> model name, of every registered model.
    model : str or None
        A fingerprint, a unique fingerprint prefix, or a model name that only
        one stored model has. None takes the store's only model with
        extracted videos.

    Returns
    -------
    str

    Raises
    ------
    StoreError
        No model matches, several do, or (with None) the store holds several
        or no extracted models; the message lists the fingerprints.

    Examples
    --------
    >>> pick_model(Path("s"), ["resmem-ab12"], {"resmem-ab12": "resmem"}, "resmem")
    'resmem-ab12'
    """

    def listing(fps):
        return ", ".join(f"{f} ({names.get(f) or '?'})" for f in fps)

    if model is None:
        if len(extracted) == 1:
            return extracted[0]
        if not extracted:
            raise StoreError(f"the store {str(path)!r} holds no extracted videos; "
                             "run `amnetvid extract` first")
        raise StoreError(f"the store {str(path)!r} holds {len(extracted)} frame models; pass "
                         f"model= (a fingerprint, a unique prefix or a name) among: {listing(extracted)}")
    if not isinstance(model, str):
        raise TypeError(f"model must be a str or None; got {type(model).__name__}")
    if model in names:
        return model
    for matches, how in (([f for f in names if f.startswith(model)], "fingerprint prefix"),
                         ([f for f, n in names.items() if n == model], "model name")):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise StoreError(f"the {how} {model!r} matches {len(matches)} frame models; give a "
                             f"longer fingerprint among: {listing(matches)}")
    raise StoreError(f"no frame model {model!r} in the store {str(path)!r}; known: "
                     f"{listing(sorted(names)) or 'none'}")


def pick_sampling(path: Path, model: str, samplings: list[str], sampling: str | None) -> str:
    """The sampling key to read, among the (sorted) samplings of ``model``'s visible videos.

    Examples
    --------
    >>> pick_sampling(Path("s"), "m1", ["frames=28"], None)
    'frames=28'
    """
    if sampling is None and len(samplings) == 1:
        return samplings[0]
    if sampling is not None and sampling in samplings:
        return sampling
    if not samplings:
        raise StoreError(f"frame model {model!r} has no extracted videos in {str(path)!r}")
    if sampling is None:
        raise StoreError(f"frame model {model!r} has videos extracted with {len(samplings)} samplings; "
                         f"pick one among {samplings} with --sampling KEY (sampling= in Python)")
    raise StoreError(f"no videos extracted by frame model {model!r} with sampling {sampling!r}; "
                     f"available: {samplings}")


def map_shapes(con: Connection, known: dict, models: Iterable[str] = (), *,
               refresh: bool = True) -> dict[str, tuple[int, ...]]:
    """Map shape per fingerprint (``()`` for a scores-only model), ``known`` updated in place.

    A fingerprint's map shape never changes (the fingerprint covers the map size),
    so a writer that asks only for known models does not touch DuckDB. ``refresh=False``
    reads the views of the previous query (compact reads the one listing it took).
    """
    wanted = list(models)
    if not wanted or any(m not in known for m in wanted):
        rows = con.query("SELECT model, map_shape FROM models", refresh=refresh, tables=("models",)).to_pylist()
        known.update({r["model"]: tuple(r["map_shape"]) for r in rows})
    return dict(known)


def snapshot(con: Connection, limit: int) -> tuple[str, Catalog]:
    """(listing key, catalog) of the store as it is now: from this process or the cache's
    file of the listing when they have it (``limit > 0``), else from DuckDB (then kept)."""
    path = con.path
    if limit:
        key = cache.listing_key(list_parts(path, cache.KEY_TABLES))
        catalog = cache.remembered(path, key, "catalog")
        saved = cache.load(path, key, "catalog.json") if catalog is None else None
        if isinstance(saved, dict) and set(saved) == set(Catalog.__dataclass_fields__):
            catalog = cache.remember(path, key, "catalog", Catalog(**saved))
        if catalog is not None:
            return key, catalog
    con.refresh()
    key = cache.listing_key(con.files)
    catalog = Catalog.query(con, refresh=False)
    if limit and cache.listing_key(con.files) == key:  # else a query had to list again: not this listing's
        cache.remember(path, key, "catalog", catalog)
        cache.save(path, key, "catalog.json", catalog.to_dict())
    return key, catalog
