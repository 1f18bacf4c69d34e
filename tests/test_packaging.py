"""A non-editable install maps envs/ and meta/ to jaxrl.envs and jaxrl.meta and installs no top-level
`envs` or `meta` module (PyPI has a popular `envs`)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAZES = ("SixteenRooms", "SixteenRooms2", "Labyrinth", "LabyrinthFlipped", "Labyrinth2", "StandardMaze", "StandardMaze2", "StandardMaze3")


def test_wheel_layout_and_imports(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("jaxrl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "jaxrl/envs/__init__.py" in names and "jaxrl/meta/__init__.py" in names and "jaxrl/cli.py" in names
    # The held-out mazes' layouts are package data (read by jaxrl.envs.maze.load_maze).
    assert {n for n in names if n.startswith("jaxrl/envs/mazes/")} == {f"jaxrl/envs/mazes/{m}.txt" for m in MAZES}
    top_level = {n.split("/")[0] for n in names if not n.startswith("jaxrl-")}
    assert top_level == {"jaxrl"}, top_level
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "jaxrl = jaxrl.cli:main" in entry_points

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True)
    code = (
        "import jaxrl, jaxrl.envs, jaxrl.meta, importlib.util;"
        "print(jaxrl.envs.__file__);"
        "print(importlib.util.find_spec('envs'), importlib.util.find_spec('meta'));"
        "import importlib.resources as r; print(r.files('jaxrl.envs').joinpath('mazes', 'Labyrinth.txt').read_text().count(chr(10)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)}, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0].startswith(str(target)), out
    assert out[1] == "None None", out
    assert out[2] == "13", out  # the installed package reads its maze files


def test_the_error_type_imports_without_gymnax_brax_or_jax():
    import subprocess
    import sys

    code = "import sys; from jaxrl.envs.errors import InvalidChoiceError; print(sorted(m for m in ('jax', 'gymnax', 'brax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out


def test_making_an_environment_leaves_gymnax_plotting_imports_until_used():
    """gymnax's Pong and Catch import seaborn and pyplot at module level (seconds at every start): jaxrl.envs
    defers them, and they still work when used, and anyone importing seaborn afterwards gets the real module."""
    code = (
        "import sys, types; import jaxrl.envs as e; e.make('Catch-bsuite');"
        "print(sorted(m for m in ('seaborn', 'matplotlib.pyplot', 'scipy.stats') if m in sys.modules));"
        "from gymnax.environments.misc import pong; print(len(pong.sns.color_palette('cubehelix', 3)));"
        "import seaborn; print(type(seaborn) is types.ModuleType and seaborn.color_palette is pong.sns.color_palette)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:3] == ["[]", "3", "True"], out
