"""Options shared by several commands, and the renamed spellings still accepted.

One meaning per name across commands: ``--model/-m`` is always the model (URI or bundle),
``--manifest`` (long only) the manifest CSV, ``--device`` the compute device,
``--device-group`` a scanner device group, ``-v`` only ``--verbose`` and ``--json`` prints
a command's result as JSON on stdout.
"""

from __future__ import annotations

from collections.abc import Mapping

import typer
from typer.core import TyperCommand

JSON_HELP = "Print the result as JSON on stdout."
JSON = typer.Option(False, "--json", help=JSON_HELP)
MANIFEST = typer.Option(..., "--manifest", exists=True, dir_okay=False,
                        help="Manifest CSV (docs/data_manifests.md).")
INGEST = typer.Option(..., "--ingest", "-i", exists=True, file_okay=False,
                      help="Output folder of `triage ingest` for the manifest's export.")
DEVICE = typer.Option("auto", "--device",
                      help="Compute device: auto (CUDA, then MPS, then CPU), cpu, cuda, mps.")
ENGINE = typer.Option("local", "--engine",
                      help="What runs the studies: local (this machine's worker processes) "
                           "or ray (a Ray cluster; docs/scaling.md).")
RAY_ADDRESS = typer.Option(None, "--ray-address",
                           help="With --engine ray: 'auto' or ray://HOST:PORT joins a running "
                                "cluster; without it a local Ray instance uses this "
                                "machine's cores.")
MODEL_HELP = ("Model URI (models:/NAME@champion, models:/NAME/3, runs:/...) or a local "
              "bundle folder.")


def echo_json(payload: dict) -> None:
    """Print `payload` as indented JSON on stdout (paths and numpy scalars as strings)."""
    import json

    typer.echo(json.dumps(payload, indent=1, default=str))


def renamed(aliases: Mapping[str, str]) -> type[TyperCommand]:
    """A command class that still accepts the old option spellings in `aliases`.

    Each old spelling (``{"--version": "--model-version"}``) is rewritten to the new one
    before parsing, with a one-line deprecation warning on stderr; help shows only the
    new names.
    """

    class RenamedCommand(TyperCommand):
        def parse_args(self, ctx, args: list[str]) -> list[str]:
            return super().parse_args(ctx, _rewrite(args, aliases, ctx.command_path))

    return RenamedCommand


def _rewrite(args: list[str], aliases: Mapping[str, str], command: str) -> list[str]:
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        old, _, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if old in aliases:
            new = aliases[old]
            typer.echo(f"warning: '{old}' of '{command}' is deprecated; use '{new}'.",
                       err=True)
            out.append(f"{new}={value}" if value or arg.endswith("=") else new)
        else:
            out.append(arg)
    return out
