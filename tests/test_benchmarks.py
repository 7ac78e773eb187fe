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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import pytest
from _typed import devices, jit, lower

from functrain._tree import is_list

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
    assert set(results["workloads"]) == {"mlp", "convnet", "convnet_ops", "optim", "seeds", "compile", "tricks"}
    for name, w in results["workloads"].items():
        assert "error" not in w, f"{name}: {w.get('error')}"
    tricks = results["workloads"]["tricks"]  # a second process loads the row's programs from the cache
    assert 0 < tricks["results"]["cached"]["value"] < tricks["results"]["cold"]["value"]
    assert tricks["cached_over_cold"] == tricks["results"]["cached"]["value"] / tricks["results"]["cold"]["value"]
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "Smoke run" in md and "## Targets" in md


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["mlp", "convnet"])
def test_training_contenders_ran_and_agree(smoke: tuple[subprocess.CompletedProcess[str], Path, Path],
                                           workload: str) -> None:
    _, out, _ = smoke
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))["workloads"][workload]["results"]
    ablation = {"functrain_self_jit", "functrain_stock_dense", "functrain_grad_norm", "jax_scan_grad_norm",
                "jax_scan_options"}
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
def test_optimizer_workload_size(smoke: tuple[subprocess.CompletedProcess[str], Path, Path]) -> None:
    _, out, _ = smoke
    optim = json.loads((out / "results.json").read_text(encoding="utf-8"))["workloads"]["optim"]
    # SMOKE_KERNELS (64, 32) and (32, 16) with their biases, counted by hand
    assert optim["config"]["n_params"] == 64 * 32 + 32 + 32 * 16 + 16 == 2608
    assert set(optim["optimizers"]) == {"sgd", "momentum", "adam", "adamw_clip"}
    # sgd's ideal traffic (read g, read p, write p) is what XLA itself counts for the fused update
    sgd = optim["optimizers"]["sgd"]["results"]
    for contender in ("functrain", "optax"):
        assert sgd[contender]["xla_bytes_accessed"] == pytest.approx(sgd[contender]["bytes_per_update"], rel=0.01)


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


@pytest.mark.slow  # a subprocess compiling the optimizer workload
def test_gpu_mode_falls_back_to_cpu_with_a_message(tmp_path: Path) -> None:
    if devices()[0].platform != "cpu":
        pytest.skip("a GPU is present: --gpu runs on it")
    proc = _bench("--gpu", "--smoke", "--workloads", "optim", "--out", tmp_path, "--no-readme", timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "falling back to the CPU" in proc.stdout
    results = json.loads((tmp_path / "results_gpu.json").read_text(encoding="utf-8"))
    assert results["machine"]["gpu_requested"] is True
    assert "falling back" in results["machine"]["gpu_fallback"]
    assert results["machine"]["torch_device"] is None  # no CUDA PyTorch here: skipped in GPU mode
    assert (tmp_path / "results_gpu.md").exists()


# ----------------------------------------------------------------------------------------------
# Fast checks of the pieces (no workload runs)


Bench = Callable[[str], Any]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Bench:
    """``bench("optimizers")`` imports ``benchmarks.optimizers`` (the repository root on the path meanwhile).

    Imported by name, so mypy does not follow into the benchmarks (they import PyTorch when present).
    """
    monkeypatch.syspath_prepend(str(ROOT))  # pyright: ignore[reportUnknownMemberType]  # path: unannotated
    return lambda name: importlib.import_module(f"benchmarks.{name}")


def _param_tree(bench: Bench) -> Any:
    return bench("optimizers").tree(((6, 4), (4, 3)), jax.random.key(0))


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adamw_clip"])
def test_traffic_table_counts_the_state_buffers(name: str, bench: Bench) -> None:
    """S in the bytes formula is the number of parameter-sized buffers the optimizers really keep."""
    bo = bench("optimizers")
    params = _param_tree(bench)
    shapes = sorted(leaf.shape for leaf in jax.tree_util.tree_leaves(params))
    for make in (bo.optax_tx, bo.functrain_tx):
        state = make(name).init(params)
        buffers = sorted(leaf.shape for leaf in jax.tree_util.tree_leaves(state) if leaf.shape in shapes)
        assert len(buffers) == bo.TRAFFIC[name][0] * len(shapes), (make.__name__, buffers)
    assert bo.TRAFFIC[name][1] == (1 if "clip" in name else 0)  # clip_by_global_norm reads the gradient twice


def test_bytes_per_update_hand_counted(bench: Bench) -> None:
    bytes_per_update = bench("optimizers").bytes_per_update

    # 10 float32 parameters: read g, read p, write p = 12 B each; + 8 B per state buffer (read and
    # write); + 4 B for clipping's extra pass over the gradient
    assert {n: bytes_per_update(n, 10) for n in ("sgd", "momentum", "adam", "adamw_clip")} == {
        "sgd": 120, "momentum": 200, "adam": 280, "adamw_clip": 320}


def test_sgd_traffic_matches_xla(bench: Bench) -> None:
    import optax

    bo = bench("optimizers")
    kernels = ((256, 128), (128, 64))  # large enough that the scalar operands do not count
    params, grads = bo.tree(kernels, jax.random.key(0)), bo.tree(kernels, jax.random.key(1))
    tx = bo.optax_tx("sgd")

    def update(p: Any, s: Any, g: Any) -> Any:
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    analysis = lower(update, params, tx.init(params), grads, donate_argnums=(0, 1)).compile().cost_analysis()
    cost: dict[str, Any] = analysis[0] if is_list(analysis) else (analysis or {})
    n = sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))
    assert float(cost["bytes accessed"]) == pytest.approx(bo.bytes_per_update("sgd", n), rel=0.001)


def _results() -> dict[str, Any]:
    saved: dict[str, Any] = json.loads((ROOT / "benchmarks" / "results" / "results.json").read_text(encoding="utf-8"))
    return saved


def test_reports_from_the_saved_results(tmp_path: Path, bench: Bench) -> None:
    report = bench("report")
    readme_table, results_markdown, targets, update_readme = (
        report.readme_table, report.results_markdown, report.targets, report.update_readme)

    results = _results()
    md = results_markdown(results)
    assert md.startswith("# functrain benchmarks") and "## Targets" in md
    for workload in results["workloads"].values():
        assert f"## {workload['title']}" in md
    table = readme_table(results)
    assert "| Workload | Contender |" in table and "| Target | Measured | Met |" in table
    for t in targets(results):  # every target's ratio is shown as measured
        if t["measured"] is not None:
            assert f"| {t['target']} | {t['measured']:.2f}× |" in table
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")
    assert update_readme(readme, table, gpu=False)
    assert readme.read_text(encoding="utf-8") == README.replace("old table", table)
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n", encoding="utf-8")
    assert not update_readme(bare, table, gpu=False) and bare.read_text(encoding="utf-8") == "no markers\n"


def test_targets_compare_against_their_thresholds(bench: Bench) -> None:
    targets = bench("report").targets
    mlp = {"jax_scan": {"ratio": 1.01}, "equinox": {"ratio": 1.4},
           "functrain_grad_norm": {"value": 90.0}, "jax_scan_grad_norm": {"value": 100.0}}
    seeds = {"run_seeds_1": {"seeds": 1, "ratio": 0.99}, "run_seeds_8": {"seeds": 8, "ratio": 0.97},
             "jit_vmap_8": {"seeds": 8}}
    results = {"workloads": {"mlp": {"results": mlp}, "seeds": {"results": seeds}}}
    got = {t["target"]: t["met"] for t in targets(results)}
    assert got["CPU MLP: functrain train_epoch (default step) ≥ 1.0× hand-written lax.scan"] is True
    assert got["CPU MLP: functrain train_epoch (default step) ≥ 1.5× equinox filter_jit loop"] is False
    assert got["CPU MLP: functrain train_epoch (default step) ≥ 2.0× PyTorch eager"] is None  # not measured
    assert got["CPU MLP: functrain with grad_norm=True ≥ 0.95× hand-written lax.scan with the same metrics"] is False
    assert got["run_seeds ≥ 0.98× the compiled-once jit(vmap(train_fn)), 1 seed"] is True
    assert got["run_seeds ≥ 0.98× the compiled-once jit(vmap(train_fn)), 8 seeds"] is False
    assert got["train-step compile time ≤ 1.2× hand-written"] is None
    conv = {"workloads": {"convnet": {"results": {"torch": {"ratio": 1.1}}}}}
    got = {t["target"]: t["met"] for t in targets(conv)}
    assert got["CPU convnet: functrain train_epoch ≥ 1.0× PyTorch eager"] is True
    assert got["CPU convnet: functrain train_epoch ≥ 1.2× PyTorch eager (stretch goal)"] is False
    tricks = {"workloads": {"tricks": {"cached_over_cold": 0.08}}}
    (row,) = [t for t in targets(tricks) if "functrain tricks row" in t["target"]]
    assert row["met"] is True and row["measured"] == 0.08 and row["threshold"] == 0.2
    assert not any("functrain tricks row" in t["target"] for t in targets(results))  # not measured: no row


@pytest.mark.parametrize("op", ["conv1_kernel_grad", "conv2_forward", "conv2_input_grad", "conv2_kernel_grad",
                                "pool1_relu_fb", "pool2_relu_fb", "dense_fb", "dense_kernel_grad", "adam"])
def test_convnet_ops_contenders_compute_the_same(op: str, bench: Bench) -> None:
    """Each op of the per-op breakdown computes the same numbers with functrain and with stock lax."""
    make_ops = bench("convnet_ops").make_ops
    (fn, args), (ref_fn, ref_args) = make_ops("functrain", 2)[op], make_ops("lax", 2)[op]
    got, ref = jit(fn)(*args), jit(ref_fn)(*ref_args)
    leaves, ref_leaves = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref)
    assert len(leaves) == len(ref_leaves)
    for a, b in zip(leaves, ref_leaves, strict=True):
        assert a.shape == b.shape
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-4 * (1.0 + float(jnp.max(jnp.abs(b))))


def test_gpu_request_without_a_gpu_falls_back(bench: Bench) -> None:
    run = bench("run")
    if devices()[0].platform != "cpu":
        pytest.skip("a GPU is present: --gpu runs on it")
    lines: list[str] = []
    settings, extra = run._settings(run._parse(["--gpu", "--smoke"]), lines.append)
    assert settings.gpu and not settings.on_gpu and settings.mode == "smoke"
    assert "falling back to the CPU" in extra["gpu_fallback"] and extra["gpu_fallback"] in lines
