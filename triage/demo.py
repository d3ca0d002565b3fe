"""`make demo`: run every stage that exists, end to end, on a fresh synthetic export."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from triage.cli import main as triage_main


def _step(title: str, argv: list[str]) -> None:
    print(f"\n== {title}: triage {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    code = triage_main(argv)
    if code:
        raise SystemExit(f"demo step '{title}' failed with exit code {code}")
    print(f"   ({time.perf_counter() - start:.1f} s)", flush=True)


def run(out: Path, studies: int, seed: int) -> None:
    """Generate an export, validate its manifest and ingest it (later stages as they land)."""
    if out.exists():
        shutil.rmtree(out)
    export = out / "export"
    manifest = out / "manifest.csv"
    _step("synthetic PACS export", ["synth", str(export), "--studies", str(studies),
                                    "--seed", str(seed), "--manifest", str(manifest)])
    _step("validate manifest", ["manifest", "validate", str(manifest)])
    from triage.cli import app

    names = {c.name for c in app.registered_commands}
    if "ingest" in names:
        _step("ingest", ["ingest", str(export), "--out", str(out / "ingest")])
    print(f"\nDemo output in {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    run(args.out, args.studies, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
