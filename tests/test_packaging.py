"""The README's development install makes functrain visible to type checkers (issue 15).

A setuptools editable install hides the package behind an import hook that mypy and pyright cannot
follow; functrain builds with hatchling, whose editable install is a plain ``.pth`` path entry.
The slow test does what a user does: a fresh virtual environment, the README's install command,
then mypy --strict and pyright --strict on a script *outside* the checkout, with no configuration.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

USER_SCRIPT = '''\
# pyright: strict
"""A small research script written against functrain's public API."""

import jax
import numpy as np

import functrain as ft
from functrain import layers, optim, train

model = layers.serial(layers.Dense(16), layers.BatchNorm(), layers.Relu, layers.Dense(3))
params, model_state, _ = model.init(jax.random.key(0), (-1, 4))
opt = optim.chain(optim.clip_by_global_norm(1.0), optim.adamw(1e-3, weight_decay=1e-4))
state = train.init_train_state(params, model_state, opt)
step = train.make_train_step(train.classifier_loss(model.apply, train=True), opt)
eval_step = train.make_eval_step(train.classifier_loss(model.apply, train=False))
data = (np.ones((32, 4), np.float32), np.zeros(32, np.int32))
state, history = ft.fit(step, state, data, jax.random.key(1), epochs=2, batch_size=8,
                        eval_step=eval_step, val_data=data, progress=False)
metrics: dict[str, jax.Array] = train.evaluate(eval_step, state, data, batch_size=16)
print(int(state.step), history.train["loss"].shape, float(metrics["loss"]))
'''


def _install_command() -> str:
    """The README test command up to (not including) the test run: venv + editable dev install."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- test-command -->", 1)[1].split("<!-- /test-command -->", 1)[0]
    line = next(x for x in block.splitlines() if "pip install" in x)
    install = line.split("&& pytest")[0].strip().rstrip("&").strip()
    assert "pip install -e" in install, install
    return install


def test_the_build_backend_makes_a_static_editable_install() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["build-system"]["build-backend"] == "hatchling.build"
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["functrain"]
    assert (ROOT / "functrain" / "py.typed").is_file()
    assert re.search(r'pip install -e "\.\[dev\]"', _install_command())


@pytest.mark.slow
def test_type_checkers_see_functrain_after_the_readme_dev_install(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    command = _install_command().replace(".venv", str(venv))
    subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=ROOT, check=True,
                   capture_output=True, text=True, timeout=1800)
    user = tmp_path / "elsewhere"
    user.mkdir()
    (user / "script.py").write_text(USER_SCRIPT)
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    for name in ("PYTHONPATH", "MYPYPATH"):  # no path configuration of any kind
        env.pop(name, None)
    mypy = subprocess.run([str(venv / "bin" / "mypy"), "--strict", "script.py"], cwd=user, env=env,
                          capture_output=True, text=True, timeout=900)
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr
    pyright = subprocess.run([str(venv / "bin" / "pyright"), "script.py"], cwd=user, env=env,
                             capture_output=True, text=True, timeout=900)
    assert pyright.returncode == 0 and "0 errors" in pyright.stdout, pyright.stdout + pyright.stderr
    run = subprocess.run([str(venv / "bin" / "python"), "script.py"], cwd=user, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0 and run.stdout.startswith("8 (2,) "), run.stdout + run.stderr
