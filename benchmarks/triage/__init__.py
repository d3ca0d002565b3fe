"""Triage-quality benchmark: routes and calibration over repeated calibration redraws."""
