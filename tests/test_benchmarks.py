"""Smoke test of the benchmark entry point (``python -m benchmarks --smoke``).

Runs every workload once at tiny shapes in a subprocess, exactly as a user would, and checks that
the JSON and Markdown results are written with the machine facts, that every contender either
ran (computing the same function as the hand-written model) or says why it was skipped (PyTorch
when it is not installed), and that the README table is regenerated between its markers on a
temporary copy -- and refused, with an error and no change, when the markers are missing.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench-table -->", "<!-- /bench-table -->"
README = f"# Title\n\nIntro text.\n\n{BEGIN}\nold table\n{END}\n\nOutro text.\n"
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _bench(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "benchmarks", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    tmp = tmp_path_factory.mktemp("bench")
    readme = tmp / "README.md"
    readme.write_text(README, encoding="utf-8")
    out = tmp / "results"
    proc = _bench("--smoke", "--out", out, "--readme", readme)
    return proc, out, readme


@pytest.mark.slow
def test_smoke_run_succeeds_and_writes_results(smoke: tuple[subprocess.CompletedProcess[str], Path, Path]) -> None:
    proc, out, _ = smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results: dict[str, Any] = json.loads((out / "results.json").read_text(encoding="utf-8"))
    machine = results["machine"]
    for key in ("cpu_count", "jax", "device", "torch", "torch_threads", "date", "mode"):
        assert key in machine
    assert machine["mode"] == "smoke"
    assert machine["cpu_count"] >= 1
    assert set(results["workloads"]) == {"mlp", "convnet", "optim", "seeds", "compile"}
    for name, w in results["workloads"].items():
        assert "error" not in w, f"{name}: {w.get('error')}"
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "Smoke run" in md and "## Targets" in md


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["mlp", "convnet"])
def test_training_contenders_ran_and_agree(smoke: tuple[subprocess.CompletedProcess[str], Path, Path],
                                           workload: str) -> None:
    _, out, _ = smoke
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))["workloads"][workload]["results"]
    ablation = {"functrain_no_grad_norm", "jax_scan_grad_norm"}
    assert set(res) - ablation == {"functrain", "jax_scan", "jax_loop", "equinox", "torch"}
    for name, e in res.items():
        if name == "torch" and not HAS_TORCH:
            assert "skipped" in e and "PyTorch" in e["skipped"]
            continue
        assert "skipped" not in e, f"{name}: {e.get('skipped')}"
        assert e["value"] > 0 and math.isfinite(e["final_loss"])
        if not name.startswith(("jax_scan", "jax_loop")):  # the hand-written contenders are the reference
            # same initial values and architecture as the hand-written model (checked in the run too)
            assert e["parity_max_abs_diff"] < 1e-3
    assert res["functrain"]["ratio"] == pytest.approx(1.0)
    assert res["jax_scan"]["ratio"] == pytest.approx(res["functrain"]["value"] / res["jax_scan"]["value"])


@pytest.mark.slow
def test_optimizer_bytes_formula(smoke: tuple[subprocess.CompletedProcess[str], Path, Path]) -> None:
    _, out, _ = smoke
    optim = json.loads((out / "results.json").read_text(encoding="utf-8"))["workloads"]["optim"]
    p = optim["config"]["n_params"]
    per_param = {"sgd": 12, "momentum": 20, "adam": 28, "adamw_clip": 32}
    assert set(optim["optimizers"]) == set(per_param)
    for name, d in optim["optimizers"].items():
        assert d["bytes_per_update"] == per_param[name] * p
        for e in d["results"].values():
            assert e["bytes_per_s"] == pytest.approx(e["bytes_per_update"] * e["value"])


@pytest.mark.slow
def test_readme_table_replaced_between_markers(smoke: tuple[subprocess.CompletedProcess[str], Path, Path]) -> None:
    _, _, readme = smoke
    text = readme.read_text(encoding="utf-8")
    before, rest = text.split(BEGIN)
    table, after = rest.split(END)
    assert before == "# Title\n\nIntro text.\n\n"
    assert after == "\n\nOutro text.\n"
    assert "old table" not in table
    assert "| Workload | Contender |" in table and "| Target | Measured | Met |" in table
    assert "python -m benchmarks" in table


@pytest.mark.slow
def test_readme_without_markers_is_left_alone(smoke: tuple[subprocess.CompletedProcess[str], Path, Path],
                                              tmp_path: Path) -> None:
    _, out, readme = smoke
    bare = tmp_path / "README.md"
    bare.write_text("# No markers here\n", encoding="utf-8")
    proc = _bench("--readme-only", "--out", out, "--readme", bare, timeout=120)
    assert proc.returncode == 1
    assert "markers" in proc.stderr
    assert bare.read_text(encoding="utf-8") == "# No markers here\n"
    # and --readme-only regenerates the table from the saved JSON when the markers are there
    proc = _bench("--readme-only", "--out", out, "--readme", readme, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| Workload | Contender |" in readme.read_text(encoding="utf-8")


def test_bad_workload_name_is_rejected() -> None:
    proc = _bench("--workloads", "mlp,nope", "--no-readme", timeout=120)
    assert proc.returncode == 2
    assert "nope" in proc.stderr


def test_gpu_mode_falls_back_to_cpu_with_a_message(tmp_path: Path) -> None:
    import jax

    if jax.devices()[0].platform != "cpu":
        pytest.skip("a GPU is present: --gpu runs on it")
    proc = _bench("--gpu", "--smoke", "--workloads", "optim", "--out", tmp_path, "--no-readme", timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "falling back to the CPU" in proc.stdout
    results = json.loads((tmp_path / "results_gpu.json").read_text(encoding="utf-8"))
    assert results["machine"]["gpu_requested"] is True
    assert "falling back" in results["machine"]["gpu_fallback"]
    assert results["machine"]["torch_device"] is None  # no CUDA PyTorch here: skipped in GPU mode
    assert (tmp_path / "results_gpu.md").exists()
