"""The run benchmark's figures in words: medians, the tables, the verdicts, the doc section.

Everything here works on `Measured` values, so ``tests/benchmarks/test_run_report.py``
checks it on known figures without timing anything.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import write_marked_section
from benchmarks.run.measure import PROBE_BATCHES, Measured

BEGIN, END = "<!-- run:begin -->", "<!-- run:end -->"
RATIO_TARGET = 0.8
RSS_LIMIT = 1.2
# `triage run`'s stage_seconds (triage.run.pipeline), in reading order, with their names.
STAGES = [("scan", "scan + group the export"),
          ("ingest_wait", "waiting for ingest (the model idle)"),
          ("inference", "forward passes"),
          ("read_cache", "reading volumes back from the cache"),
          ("route_and_journal", "rules + journal"),
          ("worklists", "worklists")]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _entry(got: list[Measured]) -> dict[str, Any]:
    entry = {
        "studies": got[0].studies, "scored": got[0].scored, "rounds": len(got),
        "scored_per_minute": _median([r.scored_per_minute for r in got]),
        "per_minute": _median([r.per_minute for r in got]),
        "per_minute_range": (min(r.per_minute for r in got), max(r.per_minute for r in got)),
        "timed_s": _median([r.timed_s for r in got]),
        "wall_s": _median([r.wall_s for r in got]),
        "cpu_s": _median([r.cpu_s for r in got]),
        "in_process_s": _median([float(r.result.get("seconds", "nan")) for r in got]),
        "maxrss_mib": max(r.maxrss_mib for r in got),
        "tree_mib": max(r.tree_mib for r in got),
        "tree_pss_mib": max(r.tree_pss_mib for r in got),
        "routes": got[-1].result.get("route", {}),
    }
    if got[0].kind == "e2e":
        names = {k for r in got for k in r.result.get("stage_seconds", {})}
        entry["stages"] = {k: _median([r.result.get("stage_seconds", {}).get(k, 0.0)
                                       for r in got]) for k in names}
        entry["inference_threads"] = got[-1].result.get("inference_threads")
    else:
        entry["threads"] = Counter(r.result.get("threads") for r in got).most_common(1)[0][0]
        entry["forward_cpu_s"] = _median([r.result.get("forward_cpu_s", float("nan"))
                                          for r in got])
        by: dict[str, list[float]] = {}
        for r in got:
            for threads, t in r.result.get("by_threads", {}).items():
                by.setdefault(threads, []).append(t["probe_s_per_batch"])
        entry["by_threads"] = {t: _median(v) for t, v in by.items()}
    return entry


def summarize(runs: list[Measured], studies: int, scale: tuple[int, int],
              cpus: int | None = None) -> dict[str, Any]:
    """Medians over rounds (throughput, seconds) and maxima (memory) per measured thing.

    Args:
        runs: every measured subprocess of every round.
        studies: export size of the throughput runs.
        scale: (small, large) export sizes whose peak RSS is compared (first network).
        cpus: cores of the machine (default: this one's), for the CPU-time ceiling.

    Returns:
        ``networks`` (per network: ``e2e``, ``forward``, ``ratio``, ``ceiling``), and
        ``small``, ``large``, ``rss_ratio``, ``tree_ratio`` for the memory scaling.
    """
    cpus = cpus or os.cpu_count() or 1
    keys = list(dict.fromkeys(r.network for r in runs))
    out: dict[str, Any] = {"networks": {}, "cpus": cpus}
    for key in keys:
        net: dict[str, Any] = {}
        e2e = [r for r in runs if (r.kind, r.network, r.studies) == ("e2e", key, studies)]
        fwd = [r for r in runs if (r.kind, r.network) == ("forward", key)]
        if e2e:
            net["e2e"] = _entry(e2e)
        if fwd:
            net["forward"] = _entry(fwd)
        if e2e and fwd:
            e, f = net["e2e"], net["forward"]
            # like for like: volumes through the model per minute, with and without the run
            net["ratio"] = e["scored_per_minute"] / f["scored_per_minute"]
            # the forward passes at the forward-only rate, for the volumes the run scored
            net["alone_s"] = f["timed_s"] * e["scored"] / f["scored"]
            # a run needing C CPU-seconds takes at least C / cpus seconds of wall time
            net["ceiling"] = net["alone_s"] / (e["cpu_s"] / cpus)
        out["networks"][key] = net
    if keys:
        first = keys[0]
        for name, n in (("small", scale[0]), ("large", scale[1])):
            got = [r for r in runs if (r.kind, r.network, r.studies) == ("e2e", first, n)]
            if got:
                out[name] = _entry(got)
        if "small" in out and "large" in out:
            out["scale_network"] = first
            out["rss_ratio"] = out["large"]["maxrss_mib"] / out["small"]["maxrss_mib"]
            out["tree_ratio"] = out["large"]["tree_mib"] / out["small"]["tree_mib"]
            out["pss_ratio"] = out["large"]["tree_pss_mib"] / out["small"]["tree_pss_mib"]
    return out


def _fmt(value: float, digits: int = 0) -> str:
    return "–" if value != value else f"{value:,.{digits}f}"


def _rate(entry: dict[str, Any]) -> str:
    low, high = entry["per_minute_range"]
    text = _fmt(entry["per_minute"], 1)
    return text if entry["rounds"] < 2 else f"{text} ({_fmt(low, 1)}–{_fmt(high, 1)})"


def _threads(n: Any) -> str:
    return f"{n} thread{'' if n == 1 else 's'}"


def table(s: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """The measured table: one row per measured thing, the network named in each."""
    names = names or {}
    lines = ["| network | measured | studies | scored by the model | studies/min | scored/min "
             "| seconds timed | wall s (process) | CPU s (process tree) "
             "| peak RSS, largest process (MiB) | peak RSS, process tree (MiB) "
             "| peak PSS, process tree (MiB) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def row(key: str, label: str, e: dict[str, Any]) -> None:
        lines.append(f"| {names.get(key, key)} | {label} | {e['studies']} | {e['scored']} | "
                     f"{_rate(e)} | {_fmt(e['scored_per_minute'], 1)} | "
                     f"{_fmt(e['timed_s'], 1)} | {_fmt(e['wall_s'], 1)} | "
                     f"{_fmt(e['cpu_s'], 1)} | {_fmt(e['maxrss_mib'])} | "
                     f"{_fmt(e['tree_mib'])} | {_fmt(e.get('tree_pss_mib', float('nan')))} |")

    for key, net in s["networks"].items():
        if "e2e" in net:
            row(key, "end to end: `triage run` (wall incl. start-up)", net["e2e"])
        if "forward" in net:
            row(key, f"forward only: `predict_proba`, volumes in memory, "
                     f"{_threads(net['forward']['threads'])}", net["forward"])
    first = s.get("scale_network", "")
    for name, label in (("small", "`triage run`, small export"),
                        ("large", "`triage run`, large export")):
        if name in s:
            row(first, label, s[name])
    return "\n".join(lines)


def breakdown(s: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """Where the end-to-end wall time went, per network (medians; % of the wall time)."""
    names = names or {}
    nets = {k: n for k, n in s["networks"].items() if "e2e" in n}
    if not nets:
        return ""
    lines = ["| end-to-end wall time | " + " | ".join(names.get(k, k) for k in nets) + " |",
             "| --- |" + " ---: |" * len(nets)]

    def cells(values: dict[str, float]) -> str:
        return " | ".join(
            f"{_fmt(values[k], 1)} s ({100 * values[k] / nets[k]['e2e']['wall_s']:.0f}%)"
            for k in nets)

    startup = {k: max(0.0, n["e2e"]["wall_s"] - n["e2e"]["in_process_s"])
               for k, n in nets.items()}
    lines.append(f"| start-up: interpreter, imports, model load | {cells(startup)} |")
    for stage, label in STAGES:
        values = {k: n["e2e"]["stages"].get(stage, 0.0) for k, n in nets.items()}
        lines.append(f"| {label} | {cells(values)} |")
    other = {k: max(0.0, n["e2e"]["in_process_s"] - sum(n["e2e"]["stages"].values()))
             for k, n in nets.items()}
    lines.append(f"| other (journal set-up, summary) | {cells(other)} |")
    lines.append("| **wall time** | "
                 + " | ".join(f"{_fmt(n['e2e']['wall_s'], 1)} s" for n in nets.values())
                 + " |")
    alone = {k: n.get("alone_s", float("nan")) for k, n in nets.items()}
    lines.append(f"| *for comparison: the same forward passes alone (forward-only rate)* | "
                 f"{cells(alone)} |")
    return "\n".join(lines)


def _ratio_verdict(name: str, net: dict[str, Any], cpus: int) -> str:
    ratio, e, f = net["ratio"], net["e2e"], net["forward"]
    line = (f"{name}: volumes through the model per minute, end to end / forward only = "
            f"{ratio:.2f} (target ≥ {RATIO_TARGET}): "
            f"{'met' if ratio >= RATIO_TARGET else '**missed**'}.")
    if ratio >= RATIO_TARGET:
        return line
    wall, stages = e["wall_s"], e["stages"]
    inference, waiting = stages.get("inference", 0.0), stages.get("ingest_wait", 0.0)
    startup = max(0.0, wall - e["in_process_s"])
    slowdown = inference / net["alone_s"] if net["alone_s"] else float("nan")
    per_study = 1000 * e["cpu_s"] / e["studies"]
    per_volume = 1000 * f["forward_cpu_s"] / f["studies"]
    return line + (
        f" The forward passes take {100 * inference / wall:.0f}% of the run's wall time "
        f"({slowdown:.1f}× their forward-only time: they share the cores with the ingest "
        f"workers), the model waits for ingest {100 * waiting / wall:.0f}% and start-up "
        f"takes {100 * startup / wall:.0f}%. The run used {_fmt(e['cpu_s'], 1)} CPU-seconds "
        f"({per_study:.0f} ms per study, start-up and ingest workers included) where the "
        f"forward pass alone uses {per_volume:.0f} ms per volume: on {cpus} cores its wall "
        f"time cannot fall below {_fmt(e['cpu_s'] / cpus, 1)} s, so the ratio cannot exceed "
        f"{net['ceiling']:.2f} here however well ingest and inference overlap; the run "
        f"reached {100 * ratio / net['ceiling']:.0f}% of that bound. The target "
        "needs the forward passes on an accelerator (or a network whose forward pass costs "
        "several times the ingest of a study) or a cheaper ingest.")


def thread_note(s: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """Forward-only seconds per batch by intra-op thread count, per network (medians)."""
    names = names or {}
    parts = []
    for key, net in s["networks"].items():
        by = net.get("forward", {}).get("by_threads", {})
        if by:
            times = ", ".join(f"{_threads(int(t))} {_fmt(1000 * v)} ms"
                              for t, v in sorted(by.items(), key=lambda kv: -int(kv[0])))
            parts.append(f"{names.get(key, key)}: {times}")
    return (f"Forward only, torch's default thread count against one thread on the first "
            f"{PROBE_BATCHES} batches (time per batch, medians; the faster then times "
            "every batch): " + "; ".join(parts) + ".") if parts else ""


def verdicts(s: dict[str, Any], names: dict[str, str] | None = None) -> list[str]:
    """The issue's two targets, met or missed, in words (one ratio line per network)."""
    names = names or {}
    nets = {k: net for k, net in s["networks"].items() if "ratio" in net}
    out = [_ratio_verdict(names.get(k, k), net, s.get("cpus", 1)) for k, net in nets.items()]
    met = [names.get(k, k) for k, n in nets.items() if n["ratio"] >= RATIO_TARGET]
    missed = {names.get(k, k): n["ratio"] / n["ceiling"] for k, n in nets.items()
              if n["ratio"] < RATIO_TARGET}
    if met and missed:
        low, high = min(missed.values()), max(missed.values())
        span = f"{100 * low:.0f}%" if round(100 * low) == round(100 * high) else \
            f"{100 * low:.0f}-{100 * high:.0f}%"
        out.append(f"In all: where the forward pass outweighs everything else the run needs "
                   f"the CPU for ({', '.join(met)}), the pipeline keeps the model busy and "
                   f"the ratio is met; where it does not ({', '.join(missed)}), ingest and "
                   f"the forward passes share these cores and the runs reached {span} of "
                   "the ratio their CPU time allows.")
    if "rss_ratio" in s:
        small, large = s["small"]["studies"], s["large"]["studies"]
        ratio, tree = s["rss_ratio"], s["tree_ratio"]
        pss = s.get("pss_ratio", float("nan"))
        worst = max(ratio, tree, pss) if pss == pss else max(ratio, tree)
        out.append(f"Peak memory of `triage run` on {large} vs {small} studies: {ratio:.2f}× "
                   f"for the largest process (RSS), {tree:.2f}× for the process tree's RSS, "
                   f"{pss:.2f}× for its PSS (target ≤ {RSS_LIMIT}× on each): "
                   f"{'met' if worst <= RSS_LIMIT else '**missed**'}.")
    return out


def write_doc(text: str, path: Path) -> None:
    """Replace the section between the run markers (append it when absent)."""
    write_marked_section(path, BEGIN, END, text)


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def section(s: dict[str, Any], meta: dict[str, Any]) -> str:
    """The markdown section (without markers).

    `meta` holds how the figures were taken: ``argv``, ``when``, ``minutes``, ``rounds``,
    ``cpus``, ``machine``, ``device``, ``versions``, the load average (``load_start``,
    ``load_end``, ``load_mean``, ``load_peak``), ``matrix``, ``workers``, ``batch_size``,
    ``harness_mib`` and ``networks``: per network key its ``name`` (as the tables call
    it), ``title``, ``train_config``, ``ingest_config``, ``model`` (the network in the
    bundle), ``in_shape``, ``epochs``, ``model_studies`` and ``train_s``.
    """
    nets = meta["networks"]
    names = {k: n["name"] for k, n in nets.items()}
    models = "; ".join(
        f"**{n['name']}** = {n['title']}: `{n['train_config']}` (network `{n['model']}`, "
        f"input {n['in_shape']}, ingest grid `{n['ingest_config']}`) trained {n['epochs']} "
        f"epoch(s) on a separate {n['model_studies']}-study export ({n['train_s']} s)"
        for n in nets.values())
    first = s["networks"].get(s.get("scale_network", ""), {})
    lines = [
        "## `triage run`: throughput and memory", "",
        f"`python -m benchmarks.run.run {meta['argv']}`, {meta['when']}, "
        f"{meta['minutes']:.1f} min in all, {meta['rounds']} round(s) (medians; range in "
        "brackets when more than one).", "",
        f"Machine: {meta['cpus']} CPU cores ({meta['machine']}), inference on "
        f"{meta.get('device', 'cpu')}; {meta['versions']}.",
        f"Load average (1/5/15 min) at the start of the measured runs "
        f"{_load(meta['load_start'])}, at the end {_load(meta['load_end'])}; the 1-min value "
        f"sampled every 5 s while they ran: mean {meta['load_mean']:.1f}, max "
        f"{meta['load_peak']:.1f} on {meta['cpus']} cores. The cores were shared with other "
        "work (the load includes this benchmark's own processes), so absolute figures are "
        "pessimistic and move from run to run.", "",
        f"Exports: `triage synth --no-extras --matrix {meta['matrix']}` (default devices and "
        f"series mix). Models: {models}. `triage run` with `--workers {meta['workers']}` "
        f"(0 = one per core) `--batch-size {meta['batch_size']}`; forward only: the same "
        f"bundle on the {first.get('forward', {}).get('studies', '?')} volumes that run "
        f"cached, loaded first, in padded batches of {meta['batch_size']} after one untimed "
        f"warm-up batch, with torch's default thread count or one thread, whichever is "
        f"faster on the first {PROBE_BATCHES} batches (named in the row).", "",
        table(s, names), "",
        thread_note(s, names), "",
        *[f"- {v}" for v in verdicts(s, names)], "",
        "Where the wall time of `triage run` went (the run's own `stage_seconds` from "
        "`run_summary.json`, medians; start-up is the process wall time minus the run's "
        "in-process time):", "",
        breakdown(s, names), "",
        "CPU s is user + system time of the process and the children it reaped (ingest and "
        "scan workers), from `os.wait4`. Peak RSS is `ru_maxrss` from `os.wait4` (largest "
        "single process: the main process that holds the model) and the sampled sum over "
        "the process tree (ingest workers included; pages shared after fork counted per "
        "process). Peak PSS is the sampled sum of each process's PSS (`/proc/PID/"
        "smaps_rollup`: a page shared after fork split among the processes sharing it), "
        "the tree's physical memory. The harness's own peak, the floor under every figure: "
        f"{meta['harness_mib']:.0f} MiB.",
    ]
    return "\n".join(lines)
