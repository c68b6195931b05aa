"""The docstring examples of the library run and give what they show.

An example that cannot run here (it needs a folder of videos, a trained pipeline or the real
weights) is marked ``# doctest: +SKIP``, and its docstring says why in a line that starts with
"Not run:" just before it, which the last test checks.
"""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "amnetvid_sk"


def _module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__":  # running it is running the CLI
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _tests(name: str):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    # only the module's own objects: re-exported names are tested where they are defined
    return [t for t in finder.find(module, name) if t.examples]


@pytest.mark.parametrize("name", _module_names())
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    """Each module's docstring examples give what they show, run in an empty folder."""
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    for test in _tests(name):
        test.globs = {**test.globs, "tmp_path": tmp_path}
        runner.run(test, out=failures.append)
    assert runner.failures == 0, "".join(failures)


_SKIP = re.compile(r"#\s*doctest:\s*\+SKIP")


@pytest.mark.parametrize("name", _module_names())
def test_skipped_examples_say_why(name):
    """Every docstring with a skipped example says why, in a line starting with "Not run:"."""
    silent = [t.name for t in _tests(name)
              if _SKIP.search(t.docstring or "") and "Not run:" not in (t.docstring or "")]
    assert not silent, f"docstrings with +SKIP examples and no 'Not run:' line: {silent}"
