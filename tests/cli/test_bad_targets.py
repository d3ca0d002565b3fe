"""What a command is pointed at (a model, a tracking store, a PACS, an output folder) being
wrong is one `error:` line naming it, before any work, never a traceback."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from triage.cli import main


def _one_line(capsys, code: int, want_code: int, *fragments: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert code == want_code, err
    assert "Traceback" not in err and len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)
    return lines[0]


@pytest.fixture
def export(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("model, fragments", [
    ("", ["the model URI is empty"]),
    ("no/such/bundle", ["Model bundle no/such/bundle: does not exist"]),
    ("a-file", ["Model bundle a-file: is a file, not a folder"]),
    (".", ["Model bundle .: is not a model bundle folder (no bundle.json in it)",
           "did you mean train-out/bundle?"]),
], ids=["empty", "missing", "file", "above-a-bundle"])
def test_a_model_path_that_is_no_bundle_folder_is_refused_not_searched(
        tmp_path, export, monkeypatch, capsys, model, fragments):
    """`--model ""` and `--model .` used to load whichever bundle lay somewhere below the
    current folder, and a missing folder was sent to MLflow as an artifact URI."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "train-out" / "bundle").mkdir(parents=True)  # `triage train --out`'s
    (tmp_path / "train-out" / "bundle" / "bundle.json").write_text("{}")
    code = main(["run", str(export), "--model", model, "--out", str(tmp_path / "out")])
    _one_line(capsys, code, 2, *fragments)


@pytest.mark.parametrize("uri, want_code, fragment", [
    ("bogus://x", 2, "The MLflow tracking URI has the scheme 'bogus', which MLflow keeps no "
                     "runs in"),
    ("sqlite:///{tmp}/a-file/mlflow.db", 2, "a-file is a file, not a folder"),
    ("http://127.0.0.1:{port}", 3, "cannot be reached"),
], ids=["scheme", "sqlite-under-a-file", "unreachable"])
@pytest.mark.parametrize("command", [["rollback", "--name", "m"],
                                     ["register", "--run-id", "0" * 32, "--name", "m"]],
                         ids=["rollback", "register"])
def test_a_tracking_uri_mlflow_cannot_use_is_one_line(tmp_path, monkeypatch, capsys, uri,
                                                      want_code, fragment, command):
    """A bad scheme gave about 70 lines of MLflow traceback, and an unreachable server
    4 minutes of retries before a wrong message (register, promote, rollback, train)."""
    (tmp_path / "a-file").write_text("x")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed below: nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri.format(tmp=tmp_path, port=port))
    monkeypatch.chdir(tmp_path)
    _one_line(capsys, main(command), want_code, fragment)


@pytest.mark.parametrize("url, fragment", [
    ("http://:99999/dicom-web", "its port is not a number from 1 to 65535"),
    ("http://:8042/dicom-web", "it names no host"),
])
def test_a_malformed_dicomweb_url_is_one_line_without_the_url(tmp_path, capsys, url,
                                                              fragment, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["run", url, "--model", "models:/m@champion", "--out", str(tmp_path / "o")])
    line = _one_line(capsys, code, 2, "The DICOMweb URL is malformed", fragment)
    assert url not in line  # a URL may carry a password


def test_ingest_checks_its_output_folder_first(tmp_path, export, capsys):
    """It blamed the first study, as the machine's failure (exit 3)."""
    (tmp_path / "a-file").write_text("x")
    code = main(["ingest", str(export), "--out", str(tmp_path / "a-file"), "--workers", "1"])
    _one_line(capsys, code, 2, "Output folder", "a-file cannot be used: it is a file")


@pytest.mark.parametrize("error, want_code, fragment", [
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "a-file/x"), 2,
     "error: Not a directory: a-file/x."),
    (OSError(errno.ENOSPC, "No space left on device", "out/cache"), 3,
     "error: No space left on device: out/cache."),
], ids=["a-path", "the-machine"])
def test_an_os_error_no_command_foresaw_is_one_line(monkeypatch, capsys, tmp_path, error,
                                                    want_code, fragment):
    """The last resort of `main`: one line naming the path, exit 2 for a path the user
    gave, 3 for the machine's failure (the error is raised where synth's work starts)."""
    def fail(*_, **__):
        raise error

    monkeypatch.setattr("triage.data.synth.export.generate_export", fail)
    _one_line(capsys, main(["synth", str(tmp_path), "--studies", "2"]), want_code, fragment)


@pytest.mark.parametrize("name", ["bad/name:x", " "])
def test_a_model_name_mlflow_refuses_is_refused_first(tmp_path, monkeypatch, capsys, name):
    """MLflow's own refusal came as a traceback, once the run had been looked up."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://never-contacted")
    code = main(["register", "--run-id", "0" * 32, "--name", name])
    _one_line(capsys, code, 2, f"--name {name!r} is not a model name MLflow accepts")


@pytest.mark.parametrize("argv, fragment", [
    (["synth", "a-file/x", "--studies", "2"], "Output folder a-file/x cannot be used"),
    (["synth", "new", "--studies", "2", "--manifest", "folder"],
     "--manifest folder is a folder; give a file path"),
    (["manifest", "build", "export", "--labels", "labels.csv", "--out", "a-file/m.csv"],
     "--out a-file/m.csv cannot be written: a-file is a file, not a folder"),
    (["manifest", "build", "export", "--labels", "labels.csv", "--out", "m.csv",
      "--secret-file", "a-file/s"], "--secret-file a-file/s cannot be written"),
    (["feedback", "import", "labels.csv", "--run", "folder", "--store", "a-file/x.db"],
     "--store a-file/x.db cannot be written"),
    (["monitor", "folder", "--no-log", "--report", "folder"],
     "--report folder is a folder; give a file path"),
    (["train", "--manifest", "labels.csv", "--ingest", "folder", "--out", "a-file"],
     "Output folder a-file cannot be used: it is a file"),
], ids=["synth-out", "synth-manifest", "manifest-out", "secret-file", "feedback-store",
        "monitor-report", "train-out"])
def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(
        tmp_path, monkeypatch, capsys, argv, fragment):
    """These wrote the whole synthetic export before failing on --manifest, or printed an
    OSError traceback (FileExistsError, NotADirectoryError, IsADirectoryError)."""
    monkeypatch.chdir(tmp_path)
    Path("a-file").write_text("x")
    Path("folder").mkdir()
    Path("export").mkdir()
    Path("labels.csv").write_text("study_uid,label\n1.2.3,1\n")
    _one_line(capsys, main(argv), 2, fragment)
    assert not Path("new").exists()  # nothing written


def test_an_mlflow_refusal_no_command_foresaw_is_one_line(monkeypatch, capsys):
    from mlflow.exceptions import MlflowException

    def refuse(*_, **__):
        raise MlflowException("Invalid model name: 'x'.\nSee the naming rules.")

    monkeypatch.setattr("triage.registry.promotion.rollback", refuse)
    _one_line(capsys, main(["rollback", "--name", "x"]), 2,
              "error: MLflow refused the request: Invalid model name: 'x'.")


def test_listen_takes_the_drift_alarms_and_checks_their_file_first(tmp_path, capsys):
    """The listener had no --alarms: a device under a drift alarm was still cleared."""
    bad = tmp_path / "alarms.json"
    bad.write_text("{bad", encoding="utf-8")
    code = main(["listen", "--model", str(tmp_path / "no-model"), "--out",
                 str(tmp_path / "out"), "--alarms", str(bad)])
    _one_line(capsys, code, 2, f"Alarm file {bad} cannot be read")


@pytest.mark.parametrize("command", ["run", "listen"])
def test_a_bad_rules_file_is_named_before_the_model_is_loaded(tmp_path, export, capsys,
                                                              command):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: [\n", encoding="utf-8")
    source = [str(export)] if command == "run" else []
    code = main([command, *source, "--model", str(tmp_path / "no-model"), "--out",
                 str(tmp_path / "out"), "--rules", str(rules)])
    _one_line(capsys, code, 2, f"Rules file {rules} is not valid YAML")
