"""`triage feedback import`: joins with the journal, idempotence, conflicts, bad files."""

from __future__ import annotations

import json

import pytest

from tests.feedback.conftest import write_reviewed
from triage.cli import main
from triage.feedback.store import LabelStore


def _import(reviewed, run, store, *extra) -> int:
    return main(["feedback", "import", str(reviewed), "--run", str(run.out), "--store",
                 str(store), *extra])


def test_review_decisions_are_stored_with_the_run_and_without_identifiers(make_run, tmp_path,
                                                                         capsys):
    run = make_run(fraction=0.2, seed=3)
    reviewed = write_reviewed(tmp_path / "reviewed.csv", run.out / "review_worklist.csv",
                              run.truth, words=("no", "YES"))
    store = tmp_path / "labels.sqlite"
    assert _import(reviewed, run, store, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    review = [r for r in run.rows if r.route in ("review", "failed")]
    assert result["added"] == result["decisions"] == len(review)
    assert result["conflicts"] == 0 and result["audit"] > 0
    with LabelStore(store) as db:
        labels = {lb.study_uid: lb for lb in db.labels()}
    assert set(labels) == {r.study_uid for r in review}
    for row in review:
        label = labels[row.study_uid]
        assert label.finding == run.truth[row.study_uid]
        assert (label.model_name, label.model_version, label.device_group, label.route,
                label.rule_ids) == (row.model_name, row.model_version, row.device_group,
                                    row.route, row.rule_ids)
        assert label.audit == row.rule_ids.startswith("audit;")
        assert label.reader.startswith("reader-") and label.read_date == "2025-03-30"
    raw = store.read_bytes()
    for value in run.identifiers | {"rad-0042"}:
        assert value.encode() not in raw, value


def test_importing_the_same_decisions_again_changes_nothing(make_run, tmp_path, capsys):
    run = make_run()
    reviewed = write_reviewed(tmp_path / "r.csv", run.out / "worklist.csv", run.truth)
    store = tmp_path / "labels.sqlite"
    assert _import(reviewed, run, store) == 0
    assert _import(reviewed, run, store, "--json") == 0
    capsys.readouterr()
    assert _import(reviewed, run, store, "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["added"], again["unchanged"], again["conflicts"]) == (0, len(run.rows), 0)


def test_a_different_decision_is_reported_as_a_conflict_and_never_stored(make_run, tmp_path,
                                                                        capsys):
    run = make_run()
    store = tmp_path / "labels.sqlite"
    first = write_reviewed(tmp_path / "a.csv", run.out / "worklist.csv", run.truth)
    assert _import(first, run, store) == 0
    flipped_uid = run.rows[7].study_uid
    truth = dict(run.truth) | {flipped_uid: 1 - run.truth[flipped_uid]}
    second = write_reviewed(tmp_path / "b.csv", run.out / "worklist.csv", truth)
    capsys.readouterr()
    assert _import(second, run, store) == 1
    captured = capsys.readouterr()
    assert f"conflict: study {flipped_uid}" in captured.out
    assert "1 conflicts" in captured.out and "conflict with stored labels" in captured.err
    with LabelStore(store) as db:
        stored = {lb.study_uid: lb.finding for lb in db.labels()}
        conflicts = db.conflicts()
    assert stored[flipped_uid] == run.truth[flipped_uid]  # the first decision is kept
    assert [(c.study_uid, c.stored_finding, c.new_finding) for c in conflicts] == [
        (flipped_uid, run.truth[flipped_uid], 1 - run.truth[flipped_uid])]
    assert _import(second, run, store) == 1  # still reported, recorded once
    with LabelStore(store) as db:
        assert len(db.conflicts()) == 1


def test_the_store_is_append_only(make_run, tmp_path):
    import sqlite3

    run = make_run(n=10)
    store = tmp_path / "labels.sqlite"
    assert _import(write_reviewed(tmp_path / "r.csv", run.out / "worklist.csv", run.truth),
                   run, store) == 0
    db = sqlite3.connect(store)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE labels SET finding = 1 - finding")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM labels")
    db.close()


def _csv(path, text: str | bytes):
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(data)
    return path


UID = "1.2.826.0.1.3680043.10.9"


@pytest.mark.parametrize(("content", "where"), [
    ("study_uid,verdict\r\n" + UID + ".1,positive\r\n", "row 1, column 'finding': is missing"),
    ("finding,reader\r\npositive,r1\r\n", "row 1, column 'study_uid': is missing"),
    ("study_uid,finding\r\n" + UID + ".1,positive\r\n" + UID + ".2,maybe\r\n",
     "row 3, column 'finding': unknown finding 'maybe'"),
    ("study_uid,finding\r\n1.2.3.999,negative\r\n",
     "row 2, column 'study_uid': study 1.2.3.999 is not in the run"),
    ("study_uid,finding\r\n,negative\r\n", "row 2, column 'study_uid': is empty"),
    ("study_uid,finding,read_date\r\n" + UID + ".1,no,2025-02-30\r\n",
     "row 2, column 'read_date': read date '2025-02-30' is not a date"),
    (b"study_uid,finding,reader\r\n" + UID.encode() + b".1,yes,r1\r\n"
     + UID.encode() + b".2,no,Dr M\xfcller\r\n",
     "row 3, column 'reader': is not UTF-8 (byte 0xFC)"),
], ids=["no-finding-column", "no-uid-column", "unknown-finding", "unknown-study", "empty-uid",
        "bad-date", "not-utf8"])
def test_bad_reviewed_files_fail_with_one_line_naming_file_row_and_column(
        make_run, tmp_path, capsys, content, where):
    run = make_run(n=10)
    path = _csv(tmp_path / "reviewed.csv", content)
    store = tmp_path / "labels.sqlite"
    assert _import(path, run, store) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(f"error: {path}, ") and where in err, err
    if store.exists():
        with LabelStore(store) as db:
            assert db.labels() == []  # nothing half-imported


def test_a_run_folder_without_journal_is_refused(tmp_path, capsys):
    path = _csv(tmp_path / "r.csv", "study_uid,finding\r\n1.2.3,yes\r\n")
    (tmp_path / "empty").mkdir()
    code = main(["feedback", "import", str(path), "--run", str(tmp_path / "empty"),
                 "--store", str(tmp_path / "s.sqlite")])
    assert code == 2
    assert "journal.jsonl: does not exist" in capsys.readouterr().err
    code = main(["feedback", "import", str(path), "--run", str(tmp_path / "nowhere"),
                 "--store", str(tmp_path / "s.sqlite")])
    assert code == 2
    assert "'--run'" in capsys.readouterr().err


@pytest.mark.parametrize("content,what", [
    (b"", "it is empty"),
    (b"study_uid,label\r\n1.2.3,1\r\n", "it is not a SQLite database"),
], ids=["empty-file", "csv"])
def test_a_file_that_is_not_a_label_store_is_refused_and_left_unchanged(
        make_run, tmp_path, capsys, content, what):
    run = make_run(n=10)
    reviewed = write_reviewed(tmp_path / "r.csv", run.out / "worklist.csv", run.truth)
    store = tmp_path / "labels.csv"
    store.write_bytes(content)
    assert _import(reviewed, run, store) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {store} is not a label store (the SQLite database `triage "
                   f"feedback import` makes): {what}; the file was left unchanged. Pass "
                   f"another label store path.")
    assert store.read_bytes() == content


def test_a_sqlite_database_of_something_else_is_refused_and_left_unchanged(tmp_path):
    import sqlite3

    from triage.feedback.errors import LabelStoreError

    other = tmp_path / "mlflow.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE experiments (name TEXT)")
    db.close()
    before = other.read_bytes()
    with pytest.raises(LabelStoreError, match=r"mlflow.db is not a label store .*: it is a "
                                              r"SQLite database of something else \(tables "
                                              r"experiments\)"):
        LabelStore(other)
    assert other.read_bytes() == before


def test_recalibrate_and_monitor_refuse_a_file_that_is_not_a_label_store(tmp_path, capsys):
    store = tmp_path / "labels.csv"
    store.write_text("study_uid,label\n1.2.3,1\n")
    before = store.read_bytes()
    # recalibrate checks the store before it loads the model (no registry is contacted)
    assert main(["recalibrate", "-m", "models:/nowhere@champion", "--labels",
                 str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {store} is not a label store") and "\n" not in err
    assert "--store" not in err
    assert main(["monitor", str(tmp_path), "--label-store", str(store), "--no-log"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {store} is not a label store") and "\n" not in err
    assert store.read_bytes() == before
