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
    --workloads L  comma-separated subset of mlp,convnet,optim,seeds,compile (default: all).
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

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
WORKLOADS = ("mlp", "convnet", "optim", "seeds", "compile")
MARKERS = {False: ("<!-- bench-table -->", "<!-- /bench-table -->"),
           True: ("<!-- bench-table-gpu -->", "<!-- /bench-table-gpu -->")}
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


# ------------------------------------------------------------------------------------ tables

def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "–"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.{digits}g}"


def _ratio(e: JSON) -> str:
    r = e.get("ratio")
    return "–" if r is None else f"{r:.2f}×"


def _value(e: JSON, unit: str = "") -> str:
    if "skipped" in e:
        return f"skipped ({e['skipped']})"
    if "value" not in e:
        return "–"
    s = _fmt(e["value"])
    t = e.get("time_s")
    if t and t.get("n", 0) > 1 and e.get("higher_is_better") and e.get("work_per_unit"):
        lo, hi = e["work_per_unit"] / t["q3"], e["work_per_unit"] / t["q1"]
        s += f" ({_fmt(lo)}–{_fmt(hi)})"
    return s + (f" {unit}" if unit else "")


def targets(results: JSON) -> list[JSON]:
    """The issue's acceptance targets, evaluated on the measured ratios (never asserted)."""
    out: list[JSON] = []
    w = results.get("workloads", {})
    gpu = bool(results.get("machine", {}).get("gpu_requested"))
    where = "GPU" if gpu else "CPU"
    mlp = w.get("mlp", {}).get("results", {})
    for name, thr, desc in (("jax_scan", 0.95, "hand-written lax.scan"),
                            ("jax_scan_grad_norm", 0.95,
                             "hand-written lax.scan with the same metrics (also the gradient norm)"),
                            ("equinox", 1.5, "equinox filter_jit loop"),
                            ("torch", 2.0, "PyTorch eager")):
        e = mlp.get(name, {})
        out.append({"target": f"{where} MLP: functrain train_epoch ≥ {thr}× {desc}", "threshold": thr,
                    "measured": e.get("ratio"), "comparison": ">=",
                    "met": None if e.get("ratio") is None else e["ratio"] >= thr})
    for opt, d in w.get("optim", {}).get("optimizers", {}).items():
        e = d["results"].get("optax", {})
        out.append({"target": f"{opt} update: functrain ≥ 0.95× optax", "threshold": 0.95,
                    "measured": e.get("ratio"), "comparison": ">=",
                    "met": None if e.get("ratio") is None else e["ratio"] >= 0.95})
    for name, desc in (("step_handwritten", "hand-written"),
                       ("step_handwritten_grad_norm", "hand-written with the same metrics")):
        e = w.get("compile", {}).get("results", {}).get(name, {})
        out.append({"target": f"train-step compile time ≤ 1.2× {desc}", "threshold": 1.2,
                    "measured": e.get("ratio"), "comparison": "<=",
                    "met": None if e.get("ratio") is None else e["ratio"] <= 1.2})
    return out


def _targets_table(results: JSON) -> list[str]:
    lines = ["| Target | Measured | Met |", "|---|---|---|"]
    for t in targets(results):
        m = "–" if t["measured"] is None else f"{t['measured']:.2f}×"
        met = "not measured" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {m} | {met} |")
    return lines


def _summary_rows(results: JSON) -> list[str]:
    w = results.get("workloads", {})
    rows = ["| Workload | Contender | Median (interquartile range) | functrain ÷ contender |",
            "|---|---|---|---|"]
    w = {k: v for k, v in w.items() if "error" not in v}
    failed = {k: v for k, v in results.get("workloads", {}).items() if "error" in v}
    for key in ("mlp", "convnet"):
        if key in w:
            for e in w[key]["results"].values():
                rows.append(f"| {w[key]['title']} | {e['label']} | {_value(e, 'steps/s')} | {_ratio(e)} |")
    if "optim" in w:
        for opt, d in w["optim"]["optimizers"].items():
            for e in d["results"].values():
                gbs = f", {e['bytes_per_s'] / 1e9:.1f} GB/s" if "bytes_per_s" in e else ""
                val = _value(e, "updates/s") + gbs
                n_p = w["optim"]["config"]["n_params"]
                size = f"{n_p / 1e6:.1f}M" if n_p >= 1e6 else f"{n_p:,}"
                rows.append(f"| Optimizer update ({opt}), {size} params | "
                            f"{e['label']} | {val} | {_ratio(e)} |")
    if "seeds" in w:
        for name, e in w["seeds"]["results"].items():
            sc = e.get("scaling_vs_1_seed")
            notes = [f"{sc:.2f}× vs 1 seed"] if sc else []
            if name.startswith("run_seeds") and e.get("ratio"):
                notes.append(f"{e['ratio']:.2f}× the compiled-once reference")
            rows.append(f"| Multi-seed MLP runs ({w['seeds']['config']['steps_per_run']} steps each) | {e['label']} | {_value(e, 'seed-steps/s')} | "
                        f"{'; '.join(notes) or '–'} |")
    if "compile" in w:
        for e in w["compile"]["results"].values():
            val = _value(e, "s")
            if "lower_s" in e:
                val += f" (trace+lower {_fmt(e['lower_s'])} s, XLA {_fmt(e['compile_s'])} s)"
            rows.append(f"| Compile time (MLP) | {e['label']} | {val} | {_ratio(e)} |")
        imp = w["compile"].get("import")
        if imp:
            b = imp["beyond_jax_s"]
            rows.append(f"| `import` time beyond `import jax` ({_fmt(imp['import_jax_s'])} s) | functrain | "
                        f"{_fmt(b['functrain'])} s (optax {_fmt(b['optax'])} s, equinox {_fmt(b['equinox'])} s) | – |")
    for key, d in failed.items():
        if "error" in d:
            rows.append(f"| {key} | **failed** | {d['error'].splitlines()[-1][:200]} | – |")
    return rows


def _machine_line(results: JSON) -> str:
    m = results.get("machine", {})
    torch = (f"torch {m['torch']} on {m['torch_device']} ({m['torch_threads']} threads)" if m.get("torch_device")
             else f"PyTorch skipped ({m.get('torch_skipped')})")
    fb = f" **{m['gpu_fallback']}**" if m.get("gpu_fallback") else ""
    q = m.get("quiet_gate")
    if q and q.get("enabled"):
        fb = (f" Before each timed unit the run waited for other processes to leave the CPUs idle "
              f"({q['waited_s']:.0f} s in all).") + fb
    return (f"{m.get('device')} ({m.get('cpu_model')}, {m.get('cpus_available')} cores available), "
            f"jax {m.get('jax')}, optax {m.get('optax')}, equinox {m.get('equinox')}, {torch}; "
            f"{m.get('date')}, mode `{m.get('mode')}`, median of {m.get('repeats')} interleaved repeats "
            f"({m.get('repeats_long_workloads')} for the convnet and seeds).{fb}")


def _shown_command(cmd: str) -> str:
    """The measuring command without the flags that only say where outputs go."""
    words, out = cmd.split(), []
    skip = False
    for w in words:
        if skip:
            skip = False
        elif w in ("--out", "--readme"):
            skip = True
        elif w not in ("--no-readme",) and not w.startswith(("--out=", "--readme=")):
            out.append(w)
    return " ".join(out)


def readme_table(results: JSON) -> str:
    """The Markdown block that goes between the README markers."""
    cmd = _shown_command(results.get("command", "python -m benchmarks"))
    lines = [f"Regenerate with `{cmd}` ({_machine_line(results)}) "
             "Ratios are functrain ÷ contender: above 1× functrain has the higher throughput; "
             "for compile times, below 1× functrain compiles faster. Details: "
             f"`benchmarks/results/{'results_gpu' if results.get('machine', {}).get('gpu_requested') else 'results'}.md`.",
             ""]
    if results.get("machine", {}).get("mode") == "smoke":
        lines.insert(0, "**Smoke run: tiny shapes, not a measurement.**\n")
    lines += _summary_rows(results)
    lines += ["", "Targets of issue 8:", ""] + _targets_table(results)
    return "\n".join(lines)


def results_markdown(results: JSON) -> str:
    """The full ``results.md``: machine facts, every workload in detail, the targets."""
    m = results.get("machine", {})
    out = ["# functrain benchmarks", ""]
    if m.get("mode") == "smoke":
        out += ["**Smoke run: tiny shapes and one repeat. These numbers are not a measurement.**", ""]
    out += [f"Command: `{_shown_command(results.get('command', ''))}`", "", "## Machine", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in m.items()]
    out += ["", "## Summary", ""] + _summary_rows(results) + ["", "## Targets", ""] + _targets_table(results)
    for key, d in results.get("workloads", {}).items():
        out += ["", f"## {d.get('title', key)}", ""]
        if "error" in d:
            out += ["```", d["error"], "```"]
            continue
        out += [f"- {k}: {v}" for k, v in d.get("config", {}).items()]
        out += [f"- measured at: {d.get('measured_at')} with `{_shown_command(d.get('command', ''))}`, median of "
                f"{d.get('repeats')} interleaved repeats, {_fmt(d.get('wall_s'))} s", ""]
        groups = ({o: g["results"] for o, g in d["optimizers"].items()} if "optimizers" in d
                  else {"": d.get("results", {})})
        for gname, res in groups.items():
            if gname:
                out += [f"### {gname}: {d['optimizers'][gname]['label']} "
                        f"({d['optimizers'][gname]['bytes_per_update'] / 1e6:.0f} MB moved per update)", ""]
            out += ["| Contender | Median | Best | Time per unit: median [min, max] (s) | Ratio | Notes |",
                    "|---|---|---|---|---|---|"]
            for e in res.values():
                t = e.get("time_s", {})
                notes = ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in e.items()
                                  if k in ("final_loss", "parity_max_abs_diff", "torch_threads", "bytes_per_s",
                                           "scaling_vs_1_seed", "lower_s", "compile_s",
                                           "xla_bytes_accessed", "xla_flops"))
                if isinstance(e.get("background_load"), dict):
                    notes += f", background load before units: median {e['background_load']['median']:.0%}"
                best = _fmt(e.get("value_best")) if "value_best" in e else _fmt(t.get("min"))
                tt = f"{_fmt(t['median'])} [{_fmt(t['min'])}, {_fmt(t['max'])}]" if t else "–"
                out.append(f"| {e['label']} | {_value(e, e.get('unit', ''))} | {best} | {tt} | {_ratio(e)} | {notes} |")
            out.append("")
        if "import" in d:
            imp = d["import"]
            out += [f"Import time (fresh subprocesses, median of {imp['runs']}): `import jax` "
                    f"{_fmt(imp['import_jax_s'])} s; beyond it: "
                    + ", ".join(f"`import {k}` {_fmt(v)} s" for k, v in imp["beyond_jax_s"].items()), ""]
    return "\n".join(out) + "\n"


def update_readme(readme: Path, block: str, gpu: bool) -> bool:
    """Replace the text between the README markers by ``block``.

    Returns:
        ``True`` on success; ``False`` (README untouched, error printed) when a marker is missing
        or they are out of order.
    """
    begin, end = MARKERS[gpu]
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError as e:
        print(f"error: cannot read README {readme}: {e}", file=sys.stderr)
        return False
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < 0 or j < i:
        print(f"error: {readme} has no '{begin}' ... '{end}' markers (in that order); the README was not "
              "changed. Add the two marker lines where the benchmark table should go.", file=sys.stderr)
        return False
    new = text[: i + len(begin)] + "\n" + block.rstrip("\n") + "\n" + text[j:]
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return True


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
    from benchmarks import compile_time, convnet, mlp, optimizers, seeds

    return {"mlp": mlp.run, "convnet": convnet.run, "optim": optimizers.run, "seeds": seeds.run,
            "compile": compile_time.run}[name]


def log(message: str) -> None:
    """Print a progress line immediately."""
    print(message, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; return the process exit status."""
    args = _parse(argv)
    gpu = bool(args.gpu)
    stem = "results_gpu" if gpu else "results"
    if args.out is not None:
        out_dir = args.out
    elif args.smoke:
        out_dir = Path(tempfile.mkdtemp(prefix="functrain-bench-smoke-"))
    else:
        out_dir = RESULTS_DIR
    readme: Path | None = None
    if not args.no_readme and (args.readme is not None or not args.smoke):
        readme = args.readme or (ROOT / "README.md")
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"

    if args.readme_only:
        if not json_path.exists():
            print(f"error: --readme-only: no results file {json_path}", file=sys.stderr)
            return 1
        saved: JSON = json.loads(json_path.read_text(encoding="utf-8"))
        md_path.write_text(results_markdown(saved), encoding="utf-8")
        ok = readme is None or update_readme(readme, readme_table(saved), bool(saved["machine"].get("gpu_requested")))
        print(f"wrote {md_path}" + (f" and the table in {readme}" if ok and readme else ""))
        return 0 if ok else 1

    settings, extra = _settings(args, log)
    from benchmarks._common import machine_info

    machine = machine_info(settings, extra.pop("threads"))
    machine.update(extra)
    cmd = "python -m benchmarks" + "".join(
        f" {a}" for a in (sys.argv[1:] if argv is None else list(argv)))
    results: JSON = {"command": cmd, "machine": machine, "workloads": {}}
    if json_path.exists() and set(args.workloads) != set(WORKLOADS):
        old = json.loads(json_path.read_text(encoding="utf-8"))
        if old.get("machine", {}).get("mode") == settings.mode:
            results["workloads"] = {k: v for k, v in old.get("workloads", {}).items() if k in WORKLOADS}
            log(f"keeping earlier results for {sorted(set(results['workloads']) - set(args.workloads))} "
                f"from {json_path}")
    failed = False
    t_start = time.perf_counter()
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
        res["measured_at"] = machine["date"]
        res["command"] = cmd
        res["repeats"] = settings.heavy_repeats if name in ("convnet", "seeds") else settings.repeats
        res["wall_s"] = time.perf_counter() - t0
        results["workloads"][name] = res
        log(f"   {name} took {res['wall_s']:.1f} s")
    results["wall_s"] = time.perf_counter() - t_start
    if settings.gate is not None:
        results["machine"]["quiet_gate"] = {"enabled": settings.gate.enabled, "threshold": settings.gate.threshold,
                                            "waited_s": settings.gate.waited}
    results["targets"] = targets(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1, default=float) + "\n", encoding="utf-8")
    md_path.write_text(results_markdown(results), encoding="utf-8")
    log(f"wrote {json_path} and {md_path} (total {results['wall_s']:.0f} s)")
    for t in results["targets"]:
        m = "–" if t["measured"] is None else f"{t['measured']:.2f}x"
        log(f"  target: {t['target']}: {m} -> {'not measured' if t['met'] is None else 'met' if t['met'] else 'MISSED'}")
    if readme is not None:
        if update_readme(readme, readme_table(results), gpu):
            log(f"updated the benchmark table in {readme}")
        else:
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
