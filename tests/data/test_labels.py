"""Labels files: what makes one unusable is one error naming file, line and column; what is
wrong with a row is an issue naming the line, and never shows a key (accession) value."""

from __future__ import annotations

import pytest

from triage.data.labels import IssueKind, JoinKey, LabelSpec, read_labels
from triage.errors import ConfigError, LabelsError

ACC = ("ZQACC0001", "ZQACC0002", "ZQACC0003", "ZQACC0004")


def _write(path, text: str | bytes):
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def test_values_map_case_insensitively_and_a_bom_and_blank_lines_are_fine(tmp_path):
    path = _write(tmp_path / "l.csv", "\ufeffAccession_Number,Label\n"
                                      f"{ACC[0]}, Yes \n\n{ACC[1]},0\n{ACC[2]},NEGATIVE\n")
    table = read_labels(path)
    assert table.key_column == "Accession_Number" and table.label_column == "Label"
    assert {k: e.label for k, e in table.entries.items()} == {ACC[0]: 1, ACC[1]: 0, ACC[2]: 0}
    assert table.entries[ACC[1]].line == 4 and table.rows == 3 and not table.issues


def test_custom_values_and_key_column(tmp_path):
    path = _write(tmp_path / "l.csv", "uid,finding,device_group\n1.2.3,malignant,acme-ct\n"
                                      "1.2.4,benign,\n1.2.5,unsure,\n")
    spec = LabelSpec(key="study_uid", key_column="uid", label_column="finding",
                     positive_values="malignant", negative_values="benign")
    table = read_labels(path, spec)
    assert spec.key is JoinKey.STUDY_UID
    assert table.entries["1.2.3"].device_group == "acme-ct"
    assert table.entries["1.2.4"].device_group is None
    assert [str(i) for i in table.issues] == [
        "line 4, column 'finding': 'unsure' is neither a positive value (malignant) nor a "
        "negative one (benign); the row is left out. Map it with --positive-values / "
        "--negative-values."]
    assert table.rejected == {"1.2.5"}


def test_duplicates_and_conflicts_name_lines_never_the_accession(tmp_path):
    path = _write(tmp_path / "l.csv", f"accession,label\n{ACC[0]},1\n{ACC[1]},0\n{ACC[0]},1\n"
                                      f"{ACC[1]},1\n,1\n{ACC[2]},1\n")
    table = read_labels(path)
    messages = [str(i) for i in table.issues]
    assert [i.kind for i in table.issues] == [IssueKind.DUPLICATE_KEY,
                                              IssueKind.CONFLICTING_LABELS, IssueKind.EMPTY_KEY]
    assert messages[0] == ("line 4, column 'accession': same accession as line 2, same label; "
                           "line 2 is used.")
    assert messages[1] == ("line 5, column 'accession': same accession as line 3 but label 1, "
                           "not 0; the study is left out until one of the rows is fixed.")
    assert messages[2] == "line 6, column 'accession': is empty; the row is left out."
    assert set(table.entries) == {ACC[0], ACC[2]} and table.rejected == {ACC[1]}
    assert not any(acc in m for m in messages for acc in ACC)


def test_a_bad_device_override_is_ignored_with_an_issue(tmp_path):
    path = _write(tmp_path / "l.csv", f"accession,label,device_group\n{ACC[0]},1,Acme CT\n")
    table = read_labels(path)
    assert table.entries[ACC[0]].device_group is None
    assert table.issues[0].kind is IssueKind.BAD_DEVICE_GROUP


@pytest.mark.parametrize(("content", "message"), [
    ("accession,finding\nZQACC0001,1\n",
     "line 1, column 'label': column 'label' is missing; the header has accession, finding. "
     "Name the column with --label-column."),
    ("acc_no,label\nZQACC0001,1\n",
     "line 1, column 'accession_number': no key column for --key accession"),
    ("accession,lable\nZQACC0001,1\n", "Did you mean 'lable'?"),
    (b"accession,label,note\nZQACC0001,1,ok\nZQACC0002,0,caf\xe9\n",
     "line 3, column 'note': not UTF-8 (byte 0xe9 cannot be decoded); save the file as UTF-8"),
    (b"accession,label\nZQACC0001,\xff1\n",
     "line 2, column 'label': not UTF-8 (byte 0xff"),
    ("", "line 1: the file is empty"),
])
def test_unusable_files_are_one_error_naming_file_line_and_column(tmp_path, content, message):
    path = _write(tmp_path / "labels.csv", content)
    with pytest.raises(LabelsError) as info:
        read_labels(path)
    text = str(info.value)
    assert text.startswith(f"{path} ") and message in text and "\n" not in text
    assert "ZQACC" not in text


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(LabelsError, match="file not found"):
        read_labels(tmp_path / "nope.csv")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"key": "mrn"}, "key: 'mrn' is not one of accession, study_uid"),
    ({"positive_values": ""}, "at least one value must mean a finding"),
    ({"positive_values": "1,yes", "negative_values": "YES,0"}, "label values yes are both"),
])
def test_bad_specs_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LabelSpec(**kwargs)
