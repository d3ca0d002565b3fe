"""The `triage` command: one small module per subcommand, logic in the library packages.

Command modules import heavy dependencies (torch, MONAI, MLflow, SimpleITK) inside their
functions so that ``triage --help`` starts fast.
"""

from __future__ import annotations

import logging
import sys

import typer

from triage.errors import TriageError

app = typer.Typer(
    name="triage",
    help="Turn a PACS export into a per-study triage worklist.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _register() -> None:
    # Each module exposes `register(app)`; keep imports light at module level.
    from triage.cli import ingest as _ingest
    from triage.cli import manifest as _manifest
    from triage.cli import registry as _registry
    from triage.cli import run as _run
    from triage.cli import synth as _synth
    from triage.cli import thresholds as _thresholds
    from triage.cli import train as _train

    for module in (_synth, _manifest, _ingest, _train, _registry, _run, _thresholds):
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; a `TriageError` becomes one clear line and exit code 2."""
    try:
        # Without standalone mode, click returns a command's `typer.Exit` code as the value.
        result = app(args=argv, standalone_mode=False)
    except TriageError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        return 2
    except typer.Exit as exit_:
        return exit_.exit_code
    except typer.Abort:
        typer.secho("aborted", err=True)
        return 130
    except Exception as err:  # click usage errors
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            return err.exit_code
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
