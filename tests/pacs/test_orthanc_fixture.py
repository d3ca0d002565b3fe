"""The Orthanc fixture itself: it starts, takes an export, answers QIDO, restarts."""

from __future__ import annotations

from tests.pacs.conftest import study_uids


def test_orthanc_takes_an_export_and_survives_a_restart(orthanc, pacs_export):
    assert orthanc.upload_export(pacs_export) > 0
    assert orthanc.studies() == study_uids(pacs_export)
    orthanc.restart()
    assert orthanc.studies() == study_uids(pacs_export)
