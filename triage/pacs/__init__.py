"""PACS connectivity: studies pulled over DICOMweb or received by C-STORE, and results sent
back as DICOM Structured Reports (docs/pacs.md).

A *source* (`triage.pacs.source.Source`) finds studies and stages each one's files in a
bounded folder; the per-study path (`ingest_study`, the model, the rules, the journal) is
the one `triage run` uses for a folder. A *sink* (`triage.pacs.report`) sends one SR per
worklist row to a DICOMweb (STOW-RS) or DIMSE (C-STORE) destination.
"""
