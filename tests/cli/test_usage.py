"""Command-line mistakes: one short error line (plus a hint), exit code 2, no traceback.

Every command is discovered from the app, so a new command is covered without editing this.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from triage.cli import app, main


def _leaf_commands(command, path=()):
    subcommands = getattr(command, "commands", None)
    if subcommands:
        for name, sub in sorted(subcommands.items()):
            yield from _leaf_commands(sub, (*path, name))
    else:
        yield path, command


COMMANDS = dict(_leaf_commands(typer.main.get_command(app)))
IDS = [" ".join(path) for path in COMMANDS]


def _annotation(param):
    descriptor = getattr(param, "type_descriptor", None)  # typer >= 0.20
    return getattr(descriptor, "annotation", None)


def _bad_value(param) -> str | None:
    """A value `param` must reject while parsing, or None when any string is accepted."""
    annotation = _annotation(param)
    if annotation in (int, float):
        return "not-a-number"
    info = getattr(getattr(param, "type_descriptor", None), "parameter_info", None)
    if annotation is Path and getattr(info, "exists", False):
        return "/no/such/path/anywhere"
    return None


def _flag(param) -> str:
    return max(param.opts, key=len)


def _assert_usage_error(code: int, err: str, *names: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert lines[0].startswith("error: "), err
    assert len(lines) <= 2, err
    assert any(name in lines[0] for name in names), (names, err)


def test_discovers_every_command():
    assert {"synth", "manifest validate", "manifest build", "manifest summary", "ingest",
            "train", "evaluate", "register", "promote", "rollback", "run"} <= set(IDS)


@pytest.mark.parametrize("path", list(COMMANDS), ids=IDS)
def test_unknown_option(path, capsys):
    code = main([*path, "--no-such-option"])
    _assert_usage_error(code, capsys.readouterr().err, "--no-such-option")


@pytest.mark.parametrize("path", list(COMMANDS), ids=IDS)
def test_missing_required_parameter(path, capsys):
    if path == ("monitor",):
        pytest.skip("a bare `triage monitor` checks the runs of the default experiment")
    required = [p for p in COMMANDS[path].params if p.required]
    assert required, f"triage {' '.join(path)} has no required parameter to leave out"
    code = main(list(path))
    names = [n for p in required for n in (*p.opts, p.name.upper())]
    _assert_usage_error(code, capsys.readouterr().err, *names)


BAD_VALUES = [(path, param) for path, command in COMMANDS.items()
              for param in command.params if _bad_value(param) is not None]


@pytest.mark.parametrize("path,param", BAD_VALUES,
                         ids=[f"{' '.join(path)} {p.name}" for path, p in BAD_VALUES])
def test_bad_value(path, param, capsys):
    value = _bad_value(param)
    argv = [*path, value] if param.param_type_name == "argument" else [*path, _flag(param),
                                                                      value]
    code = main(argv)
    names = (*param.opts, param.name.upper())
    _assert_usage_error(code, capsys.readouterr().err, *names)


def test_most_commands_have_a_checked_value():
    # register, rollback and thresholds status take only free-form names (a model URI).
    checked = {path for path, _ in BAD_VALUES}
    assert set(COMMANDS) - checked <= {("register",), ("rollback",), ("thresholds", "status")}


def test_renamed_option_still_works_with_a_warning(tmp_path, capsys):
    code = main(["train", "-m", str(tmp_path / "missing.csv")])
    err = capsys.readouterr().err
    assert "warning: '-m' of 'triage train' is deprecated; use '--manifest'." in err
    _assert_usage_error(code, err, "--manifest")


def test_promote_version_is_model_version(capsys):
    code = main(["promote", "--name", "m", "--version", "3", "-m", "/no/such.csv"])
    err = capsys.readouterr().err
    assert "use '--model-version'" in err and "use '--manifest'" in err
    _assert_usage_error(code, err, "--manifest")


def test_model_is_m_and_device_is_the_compute_device_everywhere():
    for path, command in COMMANDS.items():
        for param in command.params:
            if "-m" in param.opts:
                assert "--model" in param.opts, path
            if "-v" in param.opts or "--version" in param.opts:
                raise AssertionError(f"triage {' '.join(path)}: -v/--version is global")
            if "--device" in param.opts:
                assert "Compute" in param.help or "device:" in param.help, path


def test_every_command_has_json():
    for path, command in COMMANDS.items():
        assert any("--json" in p.opts for p in command.params), path


def test_version(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"triage {version('triage')}"


def test_bare_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err and (out + err).count("Usage") == 1
    assert "ingest" in out + err


def test_real_console_entry():
    def run(*argv):
        return subprocess.run([sys.executable, "-m", "triage", *argv], capture_output=True,
                              text=True, timeout=120)

    typo = run("ingest", "--confgi", "x.yaml")
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert typo.stderr.splitlines()[0].startswith("error: No such option: --confgi")
    assert len(typo.stderr.strip().splitlines()) == 2
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("triage ")
    bare = run()
    assert bare.returncode == 2 and "Traceback" not in bare.stderr
    assert (bare.stdout + bare.stderr).count("Usage") == 1
