"""The benchmark entry point: ``python -m benchmarks`` (or ``python benchmarks/run.py``).

Runs the selected workloads, writes ``results.json`` and ``results.md`` (``results_gpu.*`` with
``--gpu``) to ``benchmarks/results/`` and regenerates the table in ``README.md`` between
``<!-- bench-table -->`` and ``<!-- /bench-table -->`` (``<!-- bench-table-gpu -->`` ...
``<!-- /bench-table-gpu -->`` with ``--gpu``). If the markers are missing the README is left
untouched and the command exits with status 1 after printing an error.

Flags:
    --quick        same workload shapes, 5 repeats, shorter measurement units (development).
    --smoke        tiny shapes and 1 repeat to check the plumbing; numbers are meaningless. Writes
                   to a fresh temporary folder and leaves the README alone unless --out/--readme
                   are given.
    --gpu          run on ``jax.devices()[0]``; falls back to the CPU, with a message, when JAX
                   sees no GPU. PyTorch runs on CUDA when it can, and is skipped otherwise.
    --repeats N    timed repeats per contender (default: 7 full, 5 quick, 1 smoke; the long
                   convnet and seeds workloads use 5 in full mode).
    --workloads L  comma-separated subset of mlp,convnet,convnet_ops,optim,seeds,compile,tricks (default: all).
                   Results of the other workloads are kept from the existing results file.
    --out DIR      where results.json/results.md go (default benchmarks/results).
    --readme PATH  the README to update (default README.md at the repository root).
    --no-readme    do not touch the README.
    --no-wait-quiet  do not wait, before each timed unit, until other processes leave the CPUs
                   (mostly) idle; by default the run waits up to 20 s per unit and 4 minutes in all
                   (shared machines), and records the background load seen before every unit.
    --readme-only  rebuild results.md and the README table from the existing results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # executed as a script: python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import readme_table, results_markdown, targets, update_readme  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
WORKLOADS = ("mlp", "convnet", "convnet_ops", "optim", "seeds", "compile", "tricks")
JSON = dict[str, Any]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="same shapes, fewer/shorter repeats")
    mode.add_argument("--smoke", action="store_true", help="tiny shapes, 1 repeat (plumbing check)")
    p.add_argument("--gpu", action="store_true", help="run on jax.devices()[0] (GPU); CPU fallback")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per contender")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    p.add_argument("--readme", type=Path, default=None, help="README to update (default README.md)")
    p.add_argument("--no-readme", action="store_true", help="leave the README alone")
    p.add_argument("--no-wait-quiet", action="store_true",
                   help="do not wait for other processes to leave the CPUs idle before each timed unit")
    p.add_argument("--readme-only", action="store_true",
                   help="rebuild results.md and the README table from the existing results.json")
    args = p.parse_args(argv)
    chosen = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in chosen if w not in WORKLOADS]
    if bad or not chosen:
        p.error(f"--workloads: unknown workload(s) {bad or chosen}; choose from {', '.join(WORKLOADS)}")
    args.workloads = chosen
    if args.repeats is not None and args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    return args


# ----------------------------------------------------------------------------------- running

def _settings(args: argparse.Namespace, log: Callable[[str], None]) -> tuple[Any, JSON]:
    import jax

    from benchmarks._common import Mode, QuietGate, Settings

    mode: Mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    extra: JSON = {}
    dev = jax.devices()[0]
    on_gpu = bool(args.gpu) and dev.platform in ("gpu", "cuda", "rocm")
    repeats = args.repeats or {"full": 5 if on_gpu else 7, "quick": 5, "smoke": 1}[mode]
    heavy = args.repeats or {"full": 5, "quick": 5, "smoke": 1}[mode]
    if args.gpu and not on_gpu:
        msg = (f"--gpu: JAX sees no GPU (jax.devices()[0] is {dev.platform}: {dev}); falling back to the CPU "
               "(these are CPU numbers)")
        log(msg)
        extra["gpu_fallback"] = msg
    torch_device: str | None = None
    skip = ""
    threads = None
    try:
        import torch
    except ImportError as e:
        skip = f"PyTorch not installed ({e}); install the bench extra"
    else:
        if args.gpu:
            if torch.cuda.is_available():
                torch_device = "cuda"
            else:
                skip = f"torch {torch.__version__} has no CUDA here"
        else:
            torch_device = "cpu"
        if torch_device is not None:
            try:
                cores = len(os.sched_getaffinity(0))
            except AttributeError:
                cores = os.cpu_count() or 1
            torch.set_num_threads(cores)
            threads = torch.get_num_threads()
    if skip:
        log(f"PyTorch skipped: {skip}")
    gate = None if mode == "smoke" else QuietGate(enabled=not args.no_wait_quiet,
                                                  budget=240.0 if mode == "full" else 60.0)
    return Settings(mode=mode, gpu=args.gpu, on_gpu=on_gpu, repeats=repeats, heavy_repeats=heavy, gate=gate,
                    torch_device=torch_device,
                    torch_skip_reason=skip), {"threads": threads, **extra}


def _runner(name: str) -> Callable[..., JSON]:
    from benchmarks import compile_time, convnet, convnet_ops, mlp, optimizers, seeds, tricks_compile

    return {"mlp": mlp.run, "convnet": convnet.run, "convnet_ops": convnet_ops.run, "optim": optimizers.run,
            "seeds": seeds.run, "compile": compile_time.run,
            "tricks": tricks_compile.run}[name]


def log(message: str) -> None:
    """Print a progress line immediately."""
    print(message, flush=True)


def _paths(args: argparse.Namespace) -> tuple[Path, Path, Path | None]:
    """The results JSON, the results Markdown and the README to update (``None``: leave it alone)."""
    stem = "results_gpu" if args.gpu else "results"
    if args.out is not None:
        out_dir = args.out
    elif args.smoke:
        out_dir = Path(tempfile.mkdtemp(prefix="functrain-bench-smoke-"))
    else:
        out_dir = RESULTS_DIR
    readme: Path | None = None
    if not args.no_readme and (args.readme is not None or not args.smoke):
        readme = args.readme or (ROOT / "README.md")
    return out_dir / f"{stem}.json", out_dir / f"{stem}.md", readme


def _readme_only(json_path: Path, md_path: Path, readme: Path | None) -> int:
    """Rebuild ``results.md`` and the README table from the saved JSON."""
    if not json_path.exists():
        print(f"error: --readme-only: no results file {json_path}", file=sys.stderr)
        return 1
    saved: JSON = json.loads(json_path.read_text(encoding="utf-8"))
    md_path.write_text(results_markdown(saved), encoding="utf-8")
    ok = readme is None or update_readme(readme, readme_table(saved), bool(saved["machine"].get("gpu_requested")))
    print(f"wrote {md_path}" + (f" and the table in {readme}" if ok and readme else ""))
    return 0 if ok else 1


def _run_workloads(args: argparse.Namespace, settings: Any, results: JSON) -> bool:
    """Run the selected workloads into ``results["workloads"]``; whether one of them failed."""
    failed = False
    for name in args.workloads:
        reps = settings.heavy_repeats if name in ("convnet", "seeds") else settings.repeats
        log(f"== {name} ({settings.mode}, {reps} repeats)")
        t0 = time.perf_counter()
        try:
            res = _runner(name)(settings, log)
        except Exception:  # noqa: BLE001 (record the failure, keep going, exit non-zero)
            res = {"title": name, "error": traceback.format_exc()}
            log(res["error"])
            failed = True
        res.update(measured_at=results["machine"]["date"], command=results["command"], repeats=reps,
                   wall_s=time.perf_counter() - t0)
        results["workloads"][name] = res
        log(f"   {name} took {res['wall_s']:.1f} s")
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; return the process exit status."""
    args = _parse(argv)
    json_path, md_path, readme = _paths(args)
    if args.readme_only:
        return _readme_only(json_path, md_path, readme)

    settings, extra = _settings(args, log)
    from benchmarks._common import machine_info

    machine = machine_info(settings, extra.pop("threads"))
    machine.update(extra)
    cmd = "python -m benchmarks" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else list(argv)))
    results: JSON = {"command": cmd, "machine": machine, "workloads": {}}
    if json_path.exists() and set(args.workloads) != set(WORKLOADS):
        old = json.loads(json_path.read_text(encoding="utf-8"))
        if old.get("machine", {}).get("mode") == settings.mode:
            results["workloads"] = {k: v for k, v in old.get("workloads", {}).items() if k in WORKLOADS}
            log(f"keeping earlier results for {sorted(set(results['workloads']) - set(args.workloads))} "
                f"from {json_path}")
    t_start = time.perf_counter()
    failed = _run_workloads(args, settings, results)
    results["wall_s"] = time.perf_counter() - t_start
    if settings.gate is not None:
        results["machine"]["quiet_gate"] = {"enabled": settings.gate.enabled, "threshold": settings.gate.threshold,
                                            "waited_s": settings.gate.waited}
    results["targets"] = targets(results)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1, default=float) + "\n", encoding="utf-8")
    md_path.write_text(results_markdown(results), encoding="utf-8")
    log(f"wrote {json_path} and {md_path} (total {results['wall_s']:.0f} s)")
    for t in results["targets"]:
        m = "–" if t["measured"] is None else f"{t['measured']:.2f}x"
        verdict = "not measured" if t["met"] is None else "met" if t["met"] else "MISSED"
        log(f"  target: {t['target']}: {m} -> {verdict}")
    if readme is not None and not update_readme(readme, readme_table(results), bool(args.gpu)):
        return 1
    if readme is not None:
        log(f"updated the benchmark table in {readme}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
