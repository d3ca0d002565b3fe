"""Ingest benchmark: DICOM export to volumes, against dcm2niix, SimpleITK and MONAI."""
