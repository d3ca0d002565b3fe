"""CPU-seconds of `triage run`'s whole process tree, local engine vs Ray, process by process.

On a machine shared with other work, wall-clock ratios move with the load; the CPU time
that a run's processes spend does much less. This runs `triage run --engine local` and
``--engine ray`` alternately on the run benchmark's export and reports, for each:

- the CPU-seconds of every process the run started, however deep, from ``/proc/PID/stat``
  sampled every 0.1 s, summed per role (driver, ingest workers, Ray's raylet, GCS, agents,
  log monitor, workers by what they last ran). This process is made the children's
  subreaper on Linux, so that Ray's daemons and workers, whose parents exit before them,
  stay in the tree. A process's last 0.1 s, or one that lives less than that, is missed.
  (``os.wait4``'s children time misses most of a Ray run: what Ray's processes reap is
  lost when they are killed before they exit.)

::

    python -m benchmarks.run.cpu_tree --studies 150 --repeats 2      # Linux only
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import env_with_repo
from benchmarks.run.data import (
    NETWORKS,
    OUT,
    REPO,
    prepare_export,
    prepare_model,
    run_parser,
    triage_cmd,
)

PR_SET_CHILD_SUBREAPER = 36
SAMPLE_S = 0.1
TICK = os.sysconf("SC_CLK_TCK")
ROLES = (  # (substring of the command line, role): the first that matches
    ("gcs_server", "ray: gcs"),
    ("raylet/raylet", "ray: raylet"),
    ("dashboard/agent.py", "ray: dashboard agent"),
    ("runtime_env/agent", "ray: runtime_env agent"),
    ("log_monitor.py", "ray: log monitor"),
    ("dashboard/dashboard.py", "ray: dashboard"),
    ("autoscaler/_private/monitor.py", "ray: monitor"),
    ("ray::IDLE", "ray worker: idle"),
    ("default_worker.py", "ray worker: idle"),
    ("ray::", "ray worker: "),
)


def _role(cmdline: str) -> str:
    for needle, role in ROLES:
        if needle in cmdline:
            if role.endswith(": "):  # a worker, by the function or actor it last ran
                return role + cmdline.split("ray::", 1)[1].split()[0].split(".")[0]
            return role
    return "ingest workers (local)" if "multiprocessing" in cmdline else "other"


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree[ppid].append(int(entry.name))
    return tree


def _cpu_and_cmd(pid: int) -> tuple[float, str] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK, cmd


class _Sampler(threading.Thread):
    """Every process below this one: its CPU time and role, at the last sample."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.seen: dict[int, tuple[float, str]] = {}
        self.commands: dict[int, str] = {}
        self.done = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.done.wait(SAMPLE_S):
            tree = _children()
            stack = list(tree.get(me, []))
            while stack:
                pid = stack.pop()
                stack.extend(tree.get(pid, []))
                got = _cpu_and_cmd(pid)
                if got is None:
                    continue
                cpu, cmd = got
                if pid == self.root:
                    role = "driver"
                elif cmd:
                    role = _role(cmd)
                    self.commands[pid] = cmd[:160]
                else:  # a zombie: the role it had
                    role = self.seen.get(pid, (0.0, "other"))[1]
                self.seen[pid] = (cpu, role)


def measure(cmd: list[str], log: Path, timeout: float = 900) -> dict:
    """Run `cmd`; wall seconds, CPU-seconds of its tree, per role and per process."""
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                env=env_with_repo(REPO))
    sampler = _Sampler(proc.pid)
    sampler.start()
    try:
        code = proc.wait(timeout)
    finally:
        wall = time.perf_counter() - started
        deadline = time.monotonic() + 30  # orphans (Ray's daemons) stop after the driver
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
        sampler.done.set()
        sampler.join()
    if code:
        raise SystemExit(f"{' '.join(cmd[2:4])} failed ({code}); see {log}")
    roles: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for cpu, role in sampler.seen.values():
        roles[role] += cpu
        counts[role] += 1
    return {"wall_s": wall, "cpu_s": round(sum(roles.values()), 2),
            "roles": {r: (round(roles[r], 2), counts[r]) for r in sorted(roles)},
            "processes": [(round(cpu, 2), role, sampler.commands.get(pid, ""))
                          for pid, (cpu, role) in sorted(sampler.seen.items())]}


def main(argv: list[str] | None = None) -> int:
    parser = run_parser(__doc__.splitlines()[0], 150, doc=False)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args(argv)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    export = prepare_export(args.studies, args.matrix)
    bundle = prepare_model(NETWORKS[args.network], 80, args.matrix, 1)
    engines = args.engines.split(",")
    runs: dict[str, list[dict]] = {e: [] for e in engines}
    logs = OUT / "cpu" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for round_no in range(args.repeats):
        for engine in engines if round_no % 2 == 0 else engines[::-1]:
            out = OUT / "cpu" / f"run-{engine}"
            shutil.rmtree(out, ignore_errors=True)
            got = measure(triage_cmd("run", str(export), "--model", str(bundle), "--out",
                                     str(out), "--json", "--batch-size", str(args.batch_size),
                                     "--engine", engine), logs / f"{engine}-{round_no}.log")
            got["load"] = os.getloadavg()[0]
            runs[engine].append(got)
            print(f"round {round_no + 1} {engine}: {got['wall_s']:.1f} s wall, "
                  f"{got['cpu_s']:.1f} CPU-s, load {got['load']:.1f}", flush=True)
            for role, (cpu, count) in got["roles"].items():
                print(f"    {role:32s} {cpu:7.2f} CPU-s  ({count} processes)")
    print(f"\n{args.studies} studies, {os.cpu_count()} cores; medians of {args.repeats}:")
    for engine in engines:
        cpu = statistics.median(r["cpu_s"] for r in runs[engine])
        ray_own = statistics.median(
            sum(c for role, (c, _) in r["roles"].items() if role.startswith("ray: "))
            for r in runs[engine])
        wall = statistics.median(r["wall_s"] for r in runs[engine])
        print(f"  {engine:6s} {cpu:7.1f} CPU-s tree (Ray's daemons {ray_own:.1f}), "
              f"{wall:.1f} s wall")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
