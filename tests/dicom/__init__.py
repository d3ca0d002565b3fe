"""Tests of triage.dicom: scanning, selection and loading of DICOM exports."""
