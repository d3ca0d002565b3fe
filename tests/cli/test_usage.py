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


# -- values checked before any work: one line naming the option --------------------------


@pytest.fixture
def files(tmp_path, monkeypatch):
    """Paths the commands' own checks accept (existing manifest, ingest folder, export
    folder, labels CSV) and an invalid YAML file; MLflow points into `tmp_path`."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for folder in ("ingest", "export"):
        (tmp_path / folder).mkdir()
    (tmp_path / "m.csv").write_text("")
    (tmp_path / "labels.csv").write_text("accession,label\n")
    (tmp_path / "bad.yaml").write_text("foo: [1, 2\n")
    return tmp_path


def _one_error_line(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


INVALID_YAML = {
    "ingest --config": (["ingest", "{export}", "-o", "{out}", "--config", "{bad}"],
                        "Ingest config"),
    "train --config": (["train", "--manifest", "{m}", "-i", "{ingest}", "--config", "{bad}"],
                       "Train config"),
    "train --rules": (["train", "--manifest", "{m}", "-i", "{ingest}", "--rules", "{bad}"],
                      "Rules file"),
    "promote --gates": (["promote", "-n", "x", "--model-version", "1", "--manifest", "{m}",
                         "-i", "{ingest}", "--gates", "{bad}"], "Promotion gates"),
    "manifest build --config": (["manifest", "build", "{export}", "--labels", "{labels}",
                                 "-o", "{out}", "--config", "{bad}"], "Ingest config"),
}


@pytest.mark.parametrize("case", list(INVALID_YAML))
def test_invalid_yaml_is_one_line_naming_file_line_and_column(files, capsys, case):
    argv, what = INVALID_YAML[case]
    paths = {"export": files / "export", "out": files / "out", "bad": files / "bad.yaml",
             "m": files / "m.csv", "ingest": files / "ingest", "labels": files / "labels.csv"}
    err = _one_error_line(main([a.format(**paths) for a in argv]), capsys.readouterr().err)
    assert err == (f"error: {what} {paths['bad']} is not valid YAML: line 2, column 1: did "
                   f"not find expected ',' or ']'.")


@pytest.mark.parametrize("argv,expected", [
    (["train", "--epochs", "0"], "error: --epochs 0: invalid optim option: Train option "
                                 "'optim.epochs' is 0; expected a positive integer."),
    (["train", "--device", "tpu"], "error: --device tpu: invalid runtime option: Train "
                                   "option 'runtime.device' is 'tpu'; expected one of auto, "
                                   "cpu, cuda, mps."),
    (["evaluate", "--lodo", "--device", "tpu"], "error: --device tpu: invalid runtime "
                                                "option"),
    (["evaluate", "--lodo", "--seed", "-1"], "error: --seed -1: invalid runtime option"),
], ids=["train-epochs", "train-device", "evaluate-device", "evaluate-seed"])
def test_config_overrides_name_their_option(files, capsys, argv, expected):
    code = main([*argv, "--manifest", str(files / "m.csv"), "-i", str(files / "ingest"),
                 "-o", str(files / "out")])
    err = _one_error_line(code, capsys.readouterr().err)
    assert err.startswith(expected) and "replace()" not in err, err


@pytest.mark.parametrize("command", [
    ["evaluate", "-m", "/no/such/bundle"],
    ["promote", "-n", "x", "--model-version", "1"],
])
def test_split_names_are_checked_first(files, capsys, command):
    code = main([*command, "--manifest", str(files / "m.csv"), "-i", str(files / "ingest"),
                 "--split", "test", "--split", "tset"])
    err = _one_error_line(code, capsys.readouterr().err)
    assert err == ("error: --split 'tset' is not a split; splits are train, val, calib, "
                   "test. Did you mean 'test'?")


@pytest.mark.parametrize("rules", ["bad.yaml", "missing.yaml"])
def test_train_checks_its_rules_file_before_any_work(files, capsys, rules):
    # The manifest is empty (invalid): the rules file is read first, before training.
    code = main(["train", "--manifest", str(files / "m.csv"), "-i", str(files / "ingest"),
                 "-o", str(files / "out"), "--rules", str(files / rules)])
    err = _one_error_line(code, capsys.readouterr().err)
    assert err.startswith(("error: Rules file", "error: Cannot read rules file")), err
    assert str(files / rules) in err


@pytest.mark.parametrize("name", ["", " "])
def test_run_checks_the_experiment_name_before_any_work(files, capsys, name):
    code = main(["run", str(files / "export"), "-m", "/no/such/bundle", "-o",
                 str(files / "out"), "--experiment", name])
    err = _one_error_line(code, capsys.readouterr().err)
    assert err == (f"error: --experiment {name!r} is not an MLflow experiment name: it is "
                   f"empty; give a name such as 'triage-runs'.")
    assert not (files / "out").exists()


def test_train_checks_the_experiment_name_of_its_config(files, capsys):
    config = files / "train.yaml"
    config.write_text("runtime:\n  experiment: ''\n")
    code = main(["train", "--manifest", str(files / "m.csv"), "-i", str(files / "ingest"),
                 "--config", str(config)])
    err = _one_error_line(code, capsys.readouterr().err)
    assert "'runtime.experiment'" in err and "not an MLflow experiment name" in err


@pytest.mark.parametrize("command", [["ingest", "{export}", "-o", "{out}"],
                                     ["run", "{export}", "-m", "x", "-o", "{out}"]])
def test_negative_workers_are_refused(files, capsys, command):
    argv = [a.format(export=files / "export", out=files / "out") for a in command]
    code = main([*argv, "--workers", "-2"])
    _assert_usage_error(code, capsys.readouterr().err, "--workers")
    assert not (files / "out").exists()


@pytest.mark.parametrize("argv,expected", [
    (["export", "-m", "/no/such/bundle", "--finetune-epochs", "5", "--manifest", "{m}",
      "-i", "{ingest}"], "error: --finetune-epochs fine-tunes a pruned network; it needs "
                         "--prune"),
    (["evaluate", "-m", "/no/such/bundle", "--device-group", "acme", "--manifest", "{m}",
      "-i", "{ingest}"], "error: --device-group chooses the held-out devices of --lodo"),
    (["listen", "-m", "/no/such/bundle", "-o", "{out}", "--stable-seconds", "0"],
     "error: --stable-seconds must be more than 0, got 0.0."),
], ids=["finetune-epochs-without-prune", "device-group-without-lodo", "stable-seconds-0"])
def test_options_that_would_be_ignored_or_meaningless_are_refused(files, capsys, argv,
                                                                 expected):
    paths = {"m": files / "m.csv", "ingest": files / "ingest", "out": files / "out"}
    err = _one_error_line(main([a.format(**paths) for a in argv]), capsys.readouterr().err)
    assert err.startswith(expected), err


def test_a_missing_alarm_file_means_no_alarm_with_a_warning(tmp_path, caplog):
    from triage.cli.run import _active_alarms

    with caplog.at_level("WARNING", logger="triage.cli.run"):
        assert _active_alarms(tmp_path / "nope.json") == {}
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage() == (f"Alarm file {tmp_path / 'nope.json'} does not exist yet: "
                                   f"no drift alarm is active (`triage monitor --alarms "
                                   f"{tmp_path / 'nope.json'}` creates it).")
