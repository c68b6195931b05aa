"""The ``amnetvid`` command line. Each subcommand is a thin layer over the Python API.

A user error (a bad option, file, id or value) is one line on stderr, ``error: ...``,
and exit status 2; exit status 1 means that some videos failed. An unexpected
exception (a bug) keeps its traceback, so that it can be reported.

Where things are: :mod:`.parser` (the parser class, typed option values, shared option
groups), :mod:`.store_commands` (sql, info, compact, verify, labels import), :mod:`.score_commands`
(score), :mod:`.extract_commands` (extract), :mod:`.model_commands` (evaluate, table1, grid, fit, predict,
demo), :mod:`.report_commands` (report); this module builds the parser, runs a command and maps the
exception types of user errors to exit status 2.
"""

from __future__ import annotations

import os
import sys
import traceback

from .. import __version__
from ..errors import DISK_FULL_ERRNOS, AmnetvidError, ParameterError, disk_full_errno, disk_full_message
from ..precision import PRECISIONS  # noqa: F401  (the --precision choices, kept without torch)
from .extract_commands import add_extract_commands
from .model_commands import add_model_commands
from .parser import (  # noqa: F401
    DEFAULT_STORE, EXIT_CLOSED_PIPE, EXIT_STATUS, TRACEBACK_ENV, Parser, check_dask, check_device, one_line,
)
from .report_commands import add_report_commands
from .score_commands import add_score_commands
from .store_commands import add_store_commands
from .warning_lines import warning_lines


def build_parser() -> Parser:
    """The parser of every command.

    Examples
    --------
    >>> args = build_parser().parse_args(["sql", "SELECT 1", "--format", "csv", "--store", str(tmp_path)])
    >>> args.query, args.format, args.store == str(tmp_path)
    ('SELECT 1', 'csv', True)
    """
    parser = Parser(
        prog="amnetvid",
        description="Predict how memorable videos are (AMNetVid): frame models, feature store, "
                    "sklearn pipelines.",
        epilog=EXIT_STATUS,
    )
    parser.add_argument("--version", action="version", version=f"amnetvid-sk {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                help="what to do; `amnetvid COMMAND --help` tells more")
    sub.required = True
    add_score_commands(sub)
    add_extract_commands(sub)
    add_store_commands(sub)
    add_model_commands(sub)
    add_report_commands(sub)
    for action in sub.choices.values():
        # each command's own parser, for errors found after parsing (see check_dask)
        action.set_defaults(parser=action)
    return parser


def _is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a user error (one line, exit 2) rather than a bug (a traceback), by its type.

    User errors: this package's own error types (a bad parameter is a
    :class:`~amnetvid_sk.errors.ParameterError`, scikit-learn's checks included, see
    :mod:`amnetvid_sk._validation`); a full disk or used-up quota (an OSError with ENOSPC or EDQUOT,
    or another error raised while handling one); a file the system refused (an OSError naming it:
    missing, unreadable). Any other exception is a bug, wherever it was raised.
    """
    if isinstance(exc, AmnetvidError) or disk_full_errno(exc) is not None:
        return True
    return isinstance(exc, OSError) and exc.filename is not None


def _error_line(exc: BaseException) -> str:
    """The one line that reports a user error.

    scikit-learn's ``validate_params`` renames an estimator's parameter error after the
    function that ran it ("The 'maps' parameter of cross_validate ..."); the first message, which
    names the estimator, is the one reported (``ParameterError.origin``). A full disk met outside
    the package's own writers (which raise StoreFullError or DiskFullError) says so, and what to do.
    """
    if not isinstance(exc, AmnetvidError) and disk_full_errno(exc) is not None:
        return _disk_full_line(exc)
    if isinstance(exc, OSError) and exc.filename is not None and not isinstance(exc, AmnetvidError):
        names = " -> ".join(repr(str(f)) for f in (exc.filename, exc.filename2) if f is not None)
        return f"error: {exc.strerror or exc}: {names}"
    if isinstance(exc, ParameterError) and exc.origin:
        return f"error: {one_line(exc.origin)}"
    return f"error: {one_line(exc)}"


def _disk_full_line(exc: BaseException) -> str:
    """The line of a raw ENOSPC or EDQUOT error, with the file it names when it names one.

    Examples
    --------
    >>> import errno
    >>> _disk_full_line(OSError(errno.ENOSPC, "No space left on device", "out/scores.tsv"))
    "error: no space left on the disk writing 'out/scores.tsv'; free space and run the same command again"
    """
    while not (isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS):  # the one disk_full_errno found
        exc = exc.__cause__ if exc.__cause__ is not None else exc.__context__
    names = " -> ".join(repr(str(f)) for f in (exc.filename, exc.filename2) if f is not None)
    return f"error: {disk_full_message(exc.errno, 'writing ' + names if names else '')}"


def _drop_stdout() -> None:
    """Point stdout at the null device: its reader is gone (``| head``), and the interpreter's
    last flush of what is still buffered would print a BrokenPipeError at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (captured, as in tests): nothing to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(argv=None) -> int:
    """Run the ``amnetvid`` command line; returns the exit status.

    Examples
    --------
    >>> (tmp_path / "store").mkdir(exist_ok=True)  # a store that exists: a missing one is refused
    >>> main(["sql", "SELECT 42 AS answer", "--store", str(tmp_path / "store"), "--format", "json"])
    {"answer": 42}
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_dask(args)
        check_device(args)
        with warning_lines():
            status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return status
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_CLOSED_PIPE
    except KeyboardInterrupt:
        print("interrupted: what was complete is kept; run the same command again to continue",
              file=sys.stderr)
        return 130
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):  # where, too; the status stays a user error's
            traceback.print_exc()
        print(_error_line(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
