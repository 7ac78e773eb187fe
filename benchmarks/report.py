"""The benchmark reports: ``results.md``, the README table between its markers, the targets.

Everything here reads the results JSON that :mod:`benchmarks.run` writes, so ``python -m benchmarks
--readme-only`` can rebuild the reports without measuring again.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

JSON = dict[str, Any]
MARKERS = {False: ("<!-- bench-table -->", "<!-- /bench-table -->"),
           True: ("<!-- bench-table-gpu -->", "<!-- /bench-table-gpu -->")}


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
    for name, thr, desc in (("jax_scan", 1.0, "hand-written lax.scan"),
                            ("equinox", 1.5, "equinox filter_jit loop"),
                            ("torch", 2.0, "PyTorch eager")):
        e = mlp.get(name, {})
        out.append({"target": f"{where} MLP: functrain train_epoch (default step) ≥ {thr}× {desc}",
                    "threshold": thr, "measured": e.get("ratio"), "comparison": ">=",
                    "met": None if e.get("ratio") is None else e["ratio"] >= thr})
    torch_conv = w.get("convnet", {}).get("results", {}).get("torch", {})
    for thr, desc in ((1.0, "PyTorch eager"), (1.2, "PyTorch eager (stretch goal)")):
        r = torch_conv.get("ratio")
        out.append({"target": f"{where} convnet: functrain train_epoch ≥ {thr}× {desc}", "threshold": thr,
                    "measured": r, "comparison": ">=", "met": None if r is None else r >= thr})
    a, b = (mlp.get(k, {}).get("value") for k in ("functrain_grad_norm", "jax_scan_grad_norm"))
    r = a / b if a and b else None
    out.append({"target": f"{where} MLP: functrain with grad_norm=True ≥ 0.95× hand-written lax.scan with the "
                "same metrics", "threshold": 0.95, "measured": r, "comparison": ">=",
                "met": None if r is None else r >= 0.95})
    for name, e in w.get("seeds", {}).get("results", {}).items():
        if name.startswith("run_seeds_"):
            n = e.get("seeds")
            out.append({"target": f"run_seeds ≥ 0.98× the compiled-once jit(vmap(train_fn)), {n} "
                        f"seed{'' if n == 1 else 's'}", "threshold": 0.98, "measured": e.get("ratio"), "comparison": ">=",
                        "met": None if e.get("ratio") is None else e["ratio"] >= 0.98})
    for opt, d in w.get("optim", {}).get("optimizers", {}).items():
        e = d["results"].get("optax", {})
        out.append({"target": f"{opt} update: functrain ≥ 0.95× optax", "threshold": 0.95,
                    "measured": e.get("ratio"), "comparison": ">=",
                    "met": None if e.get("ratio") is None else e["ratio"] >= 0.95})
    tricks = w.get("tricks", {})
    if "cached_over_cold" in tricks:
        ratio = tricks["cached_over_cold"]
        out.append({"target": "functrain tricks row: compile seconds of a second process ≤ 0.2× the first's "
                              "(persistent cache)", "threshold": 0.2, "measured": ratio, "comparison": "<=",
                    "met": ratio <= 0.2})
    for name, desc in (("step_handwritten", "hand-written"),):
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
    if "tricks" in w:
        for e in w["tricks"]["results"].values():
            rows.append(f"| Compile time of one `functrain tricks` row (subprocesses) | {e['label']} | "
                        f"{_value(e, 's')} | {_fmt(e.get('ratio'))}× cold |")
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
    lines += ["", "Targets (issues 8 and 14):", ""] + _targets_table(results)
    return "\n".join(lines)


def _ms(e: JSON) -> str:
    t = e.get("time_ms")
    if not t:
        return f"skipped ({e['skipped']})" if "skipped" in e else "–"
    return f"{_fmt(t['median'])} [{_fmt(t['min'])}, {_fmt(t['max'])}]"


def _ops_markdown(d: JSON) -> list[str]:
    """The per-op table of :mod:`benchmarks.convnet_ops` and PyTorch's profile of the same step."""
    out = ["| Op | functrain ms: median [min, max] | stock lax ms: median [min, max] | functrain ÷ lax | "
           "XLA GFLOP per call | functrain GFLOP/s |", "|---|---|---|---|---|---|"]
    for g in d["ops"].values():
        f, ref = g["results"].get("functrain", {}), g["results"].get("lax", {})
        flops = f.get("xla_flops")
        gfs = f.get("gflop_per_s")
        out.append(f"| {g['label']} | {_ms(f)} | {_ms(ref)} | {_ratio(ref)} | "
                   f"{_fmt(flops / 1e9) if flops else '–'} | {_fmt(gfs) if gfs else '–'} |")
    tp = d.get("torch_profile", {})
    if "self_cpu_ms_per_step" in tp:
        out += ["", f"PyTorch eager, same step ({tp['threads']} threads, `torch.profiler`, {tp['steps']} steps): "
                "self CPU time per step of its busiest ops.", "", "| aten op | ms per step |", "|---|---|"]
        out += [f"| `{k}` | {_fmt(v)} |" for k, v in tp["self_cpu_ms_per_step"].items()]
    elif "skipped" in tp:
        out += ["", f"PyTorch profile skipped: {tp['skipped']}"]
    return out + [""]


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
        if "ops" in d:
            out += _ops_markdown(d)
            continue
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
