"""`make bench-ray-nodes`: `triage run --engine ray` on a simulated two-node cluster, with
and without one node removed mid-run: the studies each node ingested, and one row per study.

The cluster is `ray.cluster_utils.Cluster` on this machine: a head node and a worker node of
one CPU each, two raylets and object stores as two machines would have. The driver is
`triage run` itself (`triage.cli.main`, in this process) joining it with `--ray-address`.
In the second run a thread removes the worker node (not gracefully: its raylet is killed)
once a quarter of the studies are in the journal; Ray retries its tasks on the head node and
restarts the inference actor there if it lived on it. Both runs must give the worklist of
the first run without removal (all but ``processed_at``), one row per study. Figures go
between the ``ray-nodes`` markers of ``docs/benchmarks.md``::

    python -m benchmarks.run.two_nodes                 # the 400-study run export
    python -m benchmarks.run.two_nodes --studies 100   # quicker
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import write_marked_section
from benchmarks.run.data import (
    NETWORKS,
    OUT,
    prepare_export,
    prepare_model,
    run_parser,
    worklist_rows,
)

BEGIN, END = "<!-- ray-nodes:begin -->", "<!-- ray-nodes:end -->"


def _journal_rows(out: Path) -> int:
    try:
        with (out / "journal.jsonl").open("rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


def _remove_when(cluster, node, out: Path, rows: int, done: threading.Event,
                 removed: list[dict]) -> None:
    """Remove `node` once `rows` journal lines are written (or never, if the run ends)."""
    while not done.wait(0.2):
        if _journal_rows(out) >= rows:
            removed.append({"after_rows": _journal_rows(out), "at_s": time.perf_counter()})
            cluster.remove_node(node, allow_graceful=False)
            return


def run_once(export: Path, bundle: Path, out: Path, remove_after: int | None,
             batch_size: int) -> dict:
    """One `triage run --engine ray` on a fresh two-node cluster; its summary and timings."""
    import ray
    from ray.cluster_utils import Cluster

    from triage.cli import main

    shutil.rmtree(out, ignore_errors=True)
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    names = {worker.node_id: "worker node", cluster.head_node.node_id: "head node"}
    ray.shutdown()  # the driver (`triage run`) joins it itself
    done, removed = threading.Event(), []
    watcher = None
    if remove_after is not None:
        watcher = threading.Thread(target=_remove_when, daemon=True,
                                   args=(cluster, worker, out, remove_after, done, removed))
        watcher.start()
    started = time.perf_counter()
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            code = main(["run", str(export), "--model", str(bundle), "--out", str(out),
                         "--engine", "ray", "--ray-address", cluster.address,
                         "--batch-size", str(batch_size), "--json"])
    finally:
        done.set()
        wall = time.perf_counter() - started
        if watcher is not None:
            watcher.join()
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    text = stdout.getvalue()
    summary = json.loads(text[text.index("{"):])
    per_node = {names.get(node, node[:8]): n
                for node, n in summary.get("studies_per_node", {}).items()}
    return {"code": code, "wall_s": wall, "studies": summary["studies"],
            "per_node": per_node, "rows": worklist_rows(out),
            "removed_after_rows": removed[0]["after_rows"] if removed else None,
            "removed_at_s": removed[0]["at_s"] - started if removed else None,
            "route": summary.get("route", {})}


def main(argv: list[str] | None = None) -> int:
    parser = run_parser(__doc__.splitlines()[0], 400)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    export = prepare_export(args.studies, args.matrix)
    bundle = prepare_model(NETWORKS[args.network], 80, args.matrix, 1)
    root = OUT / "ray-nodes"
    steady = run_once(export, bundle, root / "steady", None, args.batch_size)
    lost = run_once(export, bundle, root / "removed", args.studies // 4, args.batch_size)
    same = steady["rows"] == lost["rows"]
    n = args.studies
    lines = [
        "## `triage run` on a simulated two-node Ray cluster", "",
        f"`python -m benchmarks.run.two_nodes --studies {n}`, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {(time.perf_counter() - began) / 60:.1f} "
        f"min in all. `ray.cluster_utils.Cluster` on this machine ({os.cpu_count()} cores): "
        "a head node and a worker node of one CPU each (two raylets, two object stores); "
        f"`triage run --engine ray --ray-address` on the run benchmark's {n}-study export, "
        f"network **{args.network}**, `--batch-size {args.batch_size}`. Ingest tasks go "
        "where Ray places them; the inference actor takes no CPU slot.", "",
        "| run | studies | rows | studies ingested per node | wall s | exit |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for label, got in (("both nodes throughout", steady),
                       (f"worker node removed after {lost['removed_after_rows']} rows "
                        f"({lost['removed_at_s']:.1f} s)" if lost["removed_at_s"] is not None
                        else "worker node to be removed (the run ended first)", lost)):
        nodes = ", ".join(f"{k} {v}" for k, v in got["per_node"].items())
        lines.append(f"| {label} | {got['studies']} | {len(got['rows'])} | {nodes} | "
                     f"{got['wall_s']:.1f} | {got['code']} |")
    lines += ["", f"- One row per study in both runs: "
              f"{'yes' if len(steady['rows']) == len(lost['rows']) == n else 'NO'}; the "
              f"worklists are equal (all but `processed_at`): {'yes' if same else 'NO'}.",
              "- A study counts for the node whose task returned its outcome: the groups the "
              "removed node had not returned were ingested again on the head node (Ray's "
              "task retries), so each study is counted once. The head node, from which the "
              "driver submits, takes more than half: Ray's default (hybrid) scheduling "
              "prefers the submitting node while it has room."]
    section = "\n".join(lines) + "\n"
    print(section)
    if args.doc is not None:
        write_marked_section(args.doc, BEGIN, END, section)
    ok = steady["code"] == lost["code"] == 0 and same and len(steady["rows"]) == n
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
