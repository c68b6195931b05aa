"""The options that say which stored frames a recipe reads: ``--n-frames``, ``--sampling``,
``--short-videos`` (evaluate, table1, grid, fit), and the line that says which features a
command used.

A store of real clips holds videos of many lengths and may hold several samplings; these
options reach every step that reads the store (:func:`~amnetvid_sk.pipelines.role_params`),
so a recipe needs no copy to change them.
"""

from __future__ import annotations

from ..short_videos import SHORT_VIDEOS
from .parser import _positive_int


def add_reader_args(p) -> None:
    """``--n-frames``, ``--sampling`` and ``--short-videos`` on the parser ``p``."""
    p.add_argument("--n-frames", type=_positive_int, metavar="T",
                   help="frames per video each model reads, spread over each video's own stored frames "
                        "(default: each recipe's; the mean-score baseline averages every stored frame)")
    p.add_argument("--sampling", metavar="KEY",
                   help="which extraction to read when the store holds several, e.g. frames=28 or fps=4 "
                        "(default: the only one; `amnetvid info` lists them)")
    p.add_argument("--short-videos", choices=SHORT_VIDEOS, default=None,
                   help="a video with fewer stored frames than a model reads: drop (default: left out, "
                        "named in a warning), stretch (its frames spread over the T steps), repeat-last "
                        "(its last frame repeated), error")


def reader_params(pipeline, args) -> dict:
    """``set_params`` for ``pipeline`` from the reader options in ``args`` (empty without them).

    ``--n-frames T`` goes to every step that reads the store and to each network whose
    ``module__n_frames`` equals its reader's frames (a network that reads subsets of a
    longer input keeps its own).

    Examples
    --------
    >>> from argparse import Namespace
    >>> from amnetvid_sk.pipelines import load_recipe
    >>> pipe = load_recipe("score_lstm").pipeline("store")
    >>> reader_params(pipe, Namespace(n_frames=8, sampling="fps=4", short_videos=None))
    {'frames__n_frames': 8, 'frames__sampling': 'fps=4', 'lstm__module__n_frames': 8}
    """
    from ..pipelines import network_steps, role_params, store_steps

    reader = {}
    if getattr(args, "n_frames", None) is not None:
        reader["n_frames"] = args.n_frames
    if getattr(args, "sampling", None) is not None:
        reader["sampling"] = args.sampling
    if getattr(args, "short_videos", None) is not None:
        reader["short_videos"] = args.short_videos
    out = role_params(pipeline, reader=reader) if reader else {}
    if "n_frames" in reader:
        read = {step.get_params(deep=False).get("n_frames") for _, step in store_steps(pipeline)}
        for name, net in network_steps(pipeline):
            if net.get_params().get("module__n_frames") in read:
                out[f"{name}__module__n_frames"] = args.n_frames
    return out


def features_line(store, pipeline) -> str:
    """``features: frame model FP, sampling KEY`` for the store step of ``pipeline``: which of the
    store's extractions a command reads (an error lists the choices when it is ambiguous; "" for a
    store with nothing extracted)."""
    from ..pipelines import reader_step
    from ..store import FeatureStore

    params = reader_step(pipeline)[1].get_params(deep=False)
    fs = FeatureStore(store)
    if not fs.models():
        return ""  # nothing extracted yet: the command's own error says what to run
    model = fs.resolve_model(params.get("model"))
    sampling = fs.resolve_sampling(model, params.get("sampling"))
    return f"features: frame model {model}, sampling {sampling}"
