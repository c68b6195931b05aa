"""The command line's parser class, typed option values and the option groups commands share.

Nothing here imports torch or scikit-learn: the parser of every command is built for every
run, ``amnetvid sql`` included.
"""

from __future__ import annotations

import argparse
import math
import os
import re

from ..dask_backend import dask_client_class
from ..frame_models.outputs import MAPS_MODES
from ..precision import PRECISIONS  # no torch import: precision.py loads it lazily
from ..sampling_keys import DEFAULT_N_FRAMES

DEFAULT_STORE = "store"
# Environment variable that shows the traceback of a user error too (for bug reports).
TRACEBACK_ENV = "AMNETVID_TRACEBACK"

#: the exit status when the reader of stdout closed it (``| head``): 128 + SIGPIPE, as a shell
#: reports a command that the signal ended
EXIT_CLOSED_PIPE = 141
EXIT_STATUS = f"""exit status:
  0  everything succeeded
  1  some videos failed (listed in the summary and in the store's failures table)
  2  bad arguments or input: one line on stderr says which ({TRACEBACK_ENV}=1 also shows where)
  {EXIT_CLOSED_PIPE}  the output's reader stopped reading (| head): the command stopped quietly"""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line and keeps help texts as written.

    Subcommand parsers are made by ``add_subparsers``, which uses the parent's class,
    so every subcommand (the demo's too) behaves the same.

    Examples
    --------
    >>> p = Parser(prog="demo")
    >>> _ = p.add_argument("--n", type=_positive_int, help="a count")
    >>> p.parse_args(["--n", "3"]).n
    3
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {one_line(message)} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown option is reported by the command it was given to, whose
        help lists the options it takes (argparse reports it at the top: ``amnetvid --help``)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            getattr(parsed, "parser", self).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def one_line(text) -> str:
    """A message on one line: a list that follows a colon stays a list, separated by '; '.

    Examples
    --------
    >>> one_line("bad rows:\\nline 2: x\\nline 3: y")
    'bad rows: line 2: x; line 3: y'
    """
    parts = [line.strip() for line in str(text).splitlines() if line.strip()]
    out = parts[0] if parts else ""
    for part in parts[1:]:
        out += (" " if out.endswith(":") else "; ") + part
    return out


# ---------------------------------------------------------------- option types
# Numbers are checked while parsing, so that a bad value is refused before any model loads;
# argparse prefixes the message with the option's name.
def _int_at_least(low: int):
    """A parser of ints >= ``low``.

    Examples
    --------
    >>> _int_at_least(2)("5")
    5
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int >= {low}; got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an int >= {low}; got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0; got {text!r}")
    return value


def _n_jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, or -1 for all cores; got {text!r}")
    return value


def _device(text: str) -> str:
    # whether CUDA is really there is checked when the frame model is built (it needs torch)
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"must be 'cpu', 'cuda' or 'cuda:N'; got {text!r}")
    return text


def _store_folder(text: str) -> str:
    """A store folder to write: it may not exist yet (the first write makes it), but is not a file.
    An ``s3://bucket/prefix`` store is checked for its form only (FeatureStore reaches the server)."""
    if text.startswith("s3://"):
        from ..errors import StoreError
        from ..store.location import store_root

        try:
            return store_root(text)
        except StoreError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a feature store folder")
    return text


def _existing_store_folder(text: str) -> str:
    """A store folder to read: it exists (a typo would otherwise read as an empty store; an S3
    store's existence is checked when it opens)."""
    if not text.startswith("s3://") and not os.path.exists(_store_folder(text)):
        raise argparse.ArgumentTypeError(
            f"the store folder {text!r} does not exist; check the path (`amnetvid extract` and "
            "`amnetvid labels import` make a new store)")
    return text


def check_paths_exist(parser: argparse.ArgumentParser, paths, metavar: str) -> None:
    """Refuse, before any model loads, a named file or folder that does not exist (a glob may
    match nothing; what it matches is read later).

    Examples
    --------
    >>> check_paths_exist(Parser(prog="demo"), [".", "clips/*.mp4"], "PATH")  # both fine
    """
    missing = [str(p) for p in paths if not any(c in str(p) for c in "*?[") and not os.path.exists(p)]
    if missing:
        named = ", ".join(map(repr, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        parser.error(f"argument {metavar}: {named} {'does' if len(missing) == 1 else 'do'} not exist")


_SQL_TYPES = {"int": int, "float": float, "text": str}


def _sql_param(text: str):
    """``--param`` value: text as given, unless it starts with ``int:``, ``float:`` or ``text:``.

    Examples
    --------
    >>> _sql_param("00042"), _sql_param("int:42"), _sql_param("text:int:7")
    ('00042', 42, 'int:7')
    """
    kind, sep, rest = text.partition(":")
    if not sep or kind not in _SQL_TYPES:
        return text  # '00042' stays the text '00042'; a colon elsewhere ('a:b') is text too
    try:
        return _SQL_TYPES[kind](rest)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {rest!r} is not {'an int' if kind == 'int' else 'a float'}") from None


# ---------------------------------------------------------------- shared options
class _FrameModelNames:
    """The frame model names (shipped and installed plug-ins), listed only when a help text is
    shown: finding the plug-ins reads every installed package's metadata, which a command that
    prints no help need not pay for."""

    def __str__(self) -> str:
        from ..frame_models import frame_model_names

        return ", ".join(frame_model_names())


def add_frame_model_args(p: argparse.ArgumentParser, precision: bool = True) -> None:
    """--frame-model, --weights, --allow-unsafe-weights, --device, --batch-size[, --precision]."""
    # No argparse choices: make_frame_model accepts more than a fixed list (plug-ins,
    # module:Class), and its own one-line error (exit 2) names what it accepts.
    frame_model = p.add_argument("--frame-model", default="resmem", metavar="NAME", help="frame model")
    frame_model.names = _FrameModelNames()
    # set after add_argument: newer argparse expands a help text when the option is added
    frame_model.help = ("still-image memorability model: a registered name (%(names)s; default: %(default)s), "
                        "an installed plug-in's name, or module:Class for your own FrameModel subclass")
    p.add_argument("--weights", metavar="FILE",
                   help="weights file of the frame model (default: none; amnet needs one, resmem's "
                        "weights ship in its package)")
    p.add_argument("--allow-unsafe-weights", action="store_true",
                   help="allow a weights file that needs arbitrary unpickling (trusted files only; "
                        "default: refused)")
    p.add_argument("--device", type=_device,
                   help="cpu, cuda or cuda:N (default: cuda when present, else cpu)")
    p.add_argument("--batch-size", type=_positive_int, metavar="N",
                   help="frames per forward pass, >= 1 (default: the frame model's)")
    if precision:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help=f"frame model precision, one of {', '.join(PRECISIONS)}; auto (default): "
                            "bfloat16 only where the device computes it natively, float32 elsewhere "
                            "(emulated bfloat16 is many times slower)")
        g.add_argument("--bfloat16", dest="precision", action="store_const", const="bfloat16",
                       help="the same as --precision bfloat16")


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    """--frames N or --fps RATE (one of them)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--frames", type=_positive_int, metavar="N",
                   help=f"frames spread uniformly over each clip, >= 1 (default {DEFAULT_N_FRAMES})")
    g.add_argument("--fps", type=_positive_float, metavar="RATE",
                   help="frames per second to sample instead, > 0 (the note used 4; default: --frames)")


def add_store_arg(p: argparse.ArgumentParser, default=DEFAULT_STORE, help=None, create: bool = False) -> None:
    """--store DIR: a folder that exists, or with ``create`` (commands that write) one that may not yet;
    or an ``s3://bucket/prefix`` store (the server and credentials from the AWS environment variables)."""
    p.add_argument("--store", type=_store_folder if create else _existing_store_folder, default=default,
                   metavar="DIR", help=help or f"feature store folder or s3://BUCKET/PREFIX (default: {DEFAULT_STORE}/)"
                                               + ("; made by the first write" if create else ""))


def check_device(args) -> None:
    """--device names a device this machine has (checked once parsed, before any model loads: the
    check needs torch); otherwise one line (exit 2) naming what was asked, what this machine has
    and the values allowed here."""
    if getattr(args, "device", None) in (None, "cpu"):
        return
    from ..errors import DeviceError
    from ..frame_models.devices import resolve_device

    try:
        resolve_device(args.device)
    except DeviceError as exc:
        gpus = [d for d in exc.available if d != "cpu"]
        has = (f"{len(gpus)} CUDA device{'s' if len(gpus) > 1 else ''} ({', '.join(gpus)}) and the CPU" if gpus
               else "no CUDA device (torch sees none), only the CPU")
        allowed = ", ".join(["cpu", *(["cuda", *gpus] if gpus else [])])
        args.parser.error(f"argument --device: {exc.asked!r} was asked, but this machine has {has}; allowed "
                          f"here: {allowed}, or leave --device out (CUDA when present, else the CPU)")


def add_dask_args(p: argparse.ArgumentParser, backends, help: str) -> None:
    """--backend and --scheduler; checked together by :func:`check_dask` after parsing."""
    p.add_argument("--backend", choices=backends, default="local", help=help)
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler address for --backend dask, e.g. tcp://HOST:8786 (default: none)")


def check_dask(args) -> None:
    """--backend dask needs a scheduler and the dask extra; --scheduler needs --backend dask."""
    if getattr(args, "backend", None) is None:
        return
    if args.backend == "dask":
        if not args.scheduler:
            args.parser.error("--backend dask needs --scheduler ADDRESS (e.g. tcp://HOST:8786)")
        dask_client_class("--backend dask")
    elif args.scheduler:
        args.parser.error(f"--scheduler is only used with --backend dask (got --backend {args.backend})")


def add_maps_arg(p: argparse.ArgumentParser) -> None:
    """--maps attention|none, passed to the frame model (``make_frame_model(..., maps=...)``)."""
    p.add_argument("--maps", choices=MAPS_MODES, default="attention",
                   help="attention (default): scores and attention maps; none: scores only, a forward "
                        "pass without Grad-CAM (faster)")


def add_output_args(p: argparse.ArgumentParser, formats, what: str, extra: str = "") -> None:
    """--format (one of ``formats``, the first the default) and --out FILE (default: stdout)."""
    p.add_argument("--format", choices=formats, default=formats[0],
                   help=f"table (default): tab-separated {what} with a header; csv: the same columns, "
                        "floats at full precision; json: one JSON list of objects, one per row" + extra)
    p.add_argument("--out", metavar="FILE",
                   help="write to FILE, in an existing folder, renamed into place once complete "
                        "(default: stdout)")
