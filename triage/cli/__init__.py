"""The `triage` command: one small module per subcommand, logic in the library packages.

Command modules import heavy dependencies (torch, MONAI, MLflow, SimpleITK) inside their
functions so that ``triage --help`` starts fast.

Exit codes: 0 success; 1 the command ran but its outcome is negative (documented per
command); 2 a usage or configuration error, printed as one ``error:`` line (plus a hint
line for command-line mistakes), never a traceback. A bare ``triage`` (or ``triage
manifest``) prints the help and exits 2, as click (>= 8.2) does for a missing command.
"""

from __future__ import annotations

import errno
import logging
import sys

import typer

from triage.errors import (
    EnvironmentalError,
    TriageError,
    describe_environmental,
    is_environmental,
)

app = typer.Typer(
    name="triage",
    help="Turn a PACS export into a per-study triage worklist.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("triage")
    except PackageNotFoundError:  # a source tree on PYTHONPATH, not installed
        import triage

        return triage.__version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"triage {_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
    _show_version: bool = typer.Option(False, "--version", is_eager=True,
                                       callback=_print_version, expose_value=False,
                                       help="Print the triage version and exit."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _register() -> None:
    # Each module exposes `register(app)`; keep imports light at module level.
    from triage.cli import export as _export
    from triage.cli import feedback as _feedback
    from triage.cli import ingest as _ingest
    from triage.cli import listen as _listen
    from triage.cli import manifest as _manifest
    from triage.cli import monitor as _monitor
    from triage.cli import registry as _registry
    from triage.cli import run as _run
    from triage.cli import synth as _synth
    from triage.cli import thresholds as _thresholds
    from triage.cli import train as _train

    for module in (_synth, _manifest, _ingest, _train, _registry, _export, _run, _listen,
                   _thresholds,
                   _feedback, _monitor):
        module.register(app)


_register()


def _click_errors() -> tuple[type[Exception], ...]:
    """The usage-error base classes: typer >= 0.20 vendors click as ``typer._click``, older
    typer raises the real click's; catch whichever exist."""
    errors: list[type[Exception]] = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            errors.append(__import__(module, fromlist=["ClickException"]).ClickException)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _show_usage_error(err: Exception) -> None:
    """One ``error:`` line naming the option or argument, then one hint line."""
    ctx = getattr(err, "ctx", None)
    if type(err).__name__ == "NoArgsIsHelpError":
        # Rich help was printed (to stdout) when the error was made; plain help is the message.
        if err.format_message().strip():  # type: ignore[attr-defined]
            typer.echo(err.format_message(), err=True)  # type: ignore[attr-defined]
        return
    message = " ".join(err.format_message().split())  # type: ignore[attr-defined]
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    if ctx is not None:
        typer.echo(f"hint: see '{ctx.command_path} --help'.", err=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; usage and `TriageError` errors become one clear line (exit
    2; 3 for an `EnvironmentalError`: the machine failed, rerun once it is fixed).

    An `OSError` or an MLflow error that no command turned into a `TriageError` is one line
    too (exit 2 for a path the user gave or a request MLflow refused, 3 for the machine's
    failure); any other exception is a bug and keeps its traceback."""
    try:
        # Without standalone mode, click returns a command's `typer.Exit` code as the value.
        result = app(args=argv, prog_name="triage", standalone_mode=False)
    except TriageError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        return 3 if isinstance(err, EnvironmentalError) else 2
    except typer.Exit as exit_:
        return exit_.exit_code
    except typer.Abort:
        typer.secho("aborted", err=True)
        return 130
    except _click_errors() as err:
        _show_usage_error(err)
        return getattr(err, "exit_code", 2)
    except OSError as err:  # a path no check foresaw; the machine's errors exit 3
        typer.secho(f"error: {_os_error(err)}", fg=typer.colors.RED, err=True)
        return 2 if err.errno in _PATH_ERRNOS or not is_environmental(err) else 3
    except Exception as err:
        if is_environmental(err):  # e.g. SQLite's full disk under a label store
            typer.secho(f"error: {describe_environmental(err)}; rerun once it is fixed.",
                        fg=typer.colors.RED, err=True)
            return 3
        if not type(err).__module__.startswith("mlflow"):
            raise  # a bug: its traceback is what a report needs
        text = (getattr(err, "message", None) or str(err)).strip().splitlines()
        typer.secho(f"error: MLflow refused the request: {text[0] if text else type(err)}",
                    fg=typer.colors.RED, err=True)
        return 2
    return result if isinstance(result, int) else 0


#: Errors of a path the user gave (missing, a file for a folder, no permission): exit 2.
_PATH_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                          errno.EACCES, errno.EPERM, errno.ENAMETOOLONG, errno.ELOOP})


def _os_error(err: OSError) -> str:
    """``Not a directory: afile/x`` (the OS message and the path or paths it names)."""
    what = err.strerror or type(err).__name__
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    return f"{what}: {' -> '.join(paths)}." if paths else f"{what}."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
