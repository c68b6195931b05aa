"""amnetvid-sk installed as a package: the recipes ship inside it and resolve by name."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

from amnetvid_sk.evaluate import load_recipe, recipe_dirs

from conftest import ROOT

SHIPPED = ["amnetvid", "amnetvid_augmented", "amnetvid_conv3d", "amnetvid_raw", "embedding_ridge", "mean_score",
           "score_lstm", "stacked"]


def test_pyproject_lists_every_package():
    """pyproject.toml names every package under amnetvid_sk/ (an explicit list: find cannot see pipelines/)."""
    tomllib = pytest.importorskip("tomllib")
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "amnetvid_sk").rglob("__init__.py")}
    assert set(setup["packages"]) == found | {"amnetvid_sk.pipelines"}
    assert setup["package-dir"] == {"amnetvid_sk.pipelines": "pipelines"}


def test_recipe_names_resolve_outside_the_checkout(tmp_path, monkeypatch):
    """From a folder without pipelines/, each shipped name loads the installed package's recipe."""
    monkeypatch.chdir(tmp_path)
    shipped = recipe_dirs()[-1]
    for name in SHIPPED:
        recipe = load_recipe(name)
        assert recipe.recipe_name == name and Path(recipe.__file__).parent == shipped


def test_local_pipelines_folder_comes_first_and_paths_still_work(tmp_path, monkeypatch):
    """./pipelines/NAME.py wins over the shipped recipe of that name; a path to any .py file loads it."""
    (tmp_path / "pipelines").mkdir()
    text = (ROOT / "pipelines" / "mean_score.py").read_text() + "\nMINE = True\n"
    (tmp_path / "pipelines" / "mean_score.py").write_text(text)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "my_recipe.py").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert load_recipe("mean_score").MINE
    assert load_recipe("score_lstm").recipe_name == "score_lstm"  # not in ./pipelines: the shipped one
    assert load_recipe(tmp_path / "elsewhere" / "my_recipe.py").recipe_name == "my_recipe"


def test_unknown_recipe_names_the_shipped_ones(tmp_path, monkeypatch):
    """An unknown name, asked from outside the checkout, gets an error listing every shipped recipe."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        load_recipe("no_such_recipe")
    assert "'no_such_recipe'" in str(err.value) and str(SHIPPED) in str(err.value)


def _source_copy(dst: Path) -> Path:
    """What a build needs, copied: an in-tree build would reuse a stale build/ folder of the checkout."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("amnetvid_sk", "pipelines"):
        shutil.copytree(ROOT / name, dst / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dst / name)
    return dst


def _run(cmd, cwd, env, timeout=600):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_runs_recipes_by_name(tmp_path):
    """The wheel, installed with --no-deps into a fresh folder, evaluates mean_score by name from elsewhere."""
    from amnetvid_sk.testing.synthetic import write_synthetic_store

    # build without isolation: no network, and the venv has setuptools
    src = _source_copy(tmp_path / "src")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
          "--wheel-dir", tmp_path / "dist", src], cwd=tmp_path, env=os.environ)
    (wheel,) = (tmp_path / "dist").glob("amnetvid_sk-*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "amnetvid_sk").rglob("*.py")}
    expected |= {f"amnetvid_sk/pipelines/{p.name}" for p in (ROOT / "pipelines").glob("*.py")}
    assert expected <= in_wheel, sorted(expected - in_wheel)

    target = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", target, wheel],
         cwd=tmp_path, env=os.environ)

    # -S skips the venv's .pth files, so its editable finder cannot serve the checkout's
    # amnetvid_sk or pipelines/; the venv's site-packages, after the target, supply the rest.
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]]))
    python = [sys.executable, "-S"]
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([*python, "-c", "import amnetvid_sk, amnetvid_sk.pipelines as p; "
                  "print(amnetvid_sk.__file__); print(p.__file__)"], cwd=work, env=env).stdout.split()
    assert [Path(w).parent for w in where] == [target / "amnetvid_sk", target / "amnetvid_sk" / "pipelines"]

    # 28 frames, as many as mean_score reads today; labels follow the mean frame score, so the
    # baseline must find them in every fold
    rng = np.random.default_rng(0)
    maps = rng.random((40, 28, 3, 14, 14), dtype=np.float32)
    maps /= maps.sum(axis=(-2, -1), keepdims=True)
    scores = rng.uniform(0.4, 0.9, size=(40, 28)).astype(np.float32)
    short = scores.mean(axis=1)
    store = tmp_path / "store"
    write_synthetic_store(store, maps, scores, short)

    script = target / "bin" / "amnetvid"
    out = _run([*python, script, "evaluate", "mean_score", "--store", store, "--target", "short", "--cv", "2"],
               cwd=work, env=env).stdout
    folds = [line for line in out.splitlines() if line.startswith("fold ")]
    assert [line.split(":")[0] for line in folds] == ["fold 1", "fold 2"], out
    assert all(float(line.split()[-1]) > 0.9 for line in folds), out
    (summary,) = [line for line in out.splitlines() if line.startswith("mean_score short-term: mean ")]
    assert float(summary.split("mean ")[1].split()[0]) > 0.9 and "(2 folds" in summary, out

    # the console script as pip wrote it (its own interpreter line), with the target first
    env_plain = dict(env, PYTHONPATH=str(target))
    help_text = _run([script, "demo", "--help"], cwd=work, env=env_plain).stdout
    assert help_text.startswith("usage: amnetvid demo") and "--out" in help_text
