"""The review feedback loop: readers' decisions -> label store -> recalibrated model version.

`decisions` reads a reviewed worklist, `store` keeps the labels (SQLite, append-only),
`importer` joins decisions with the run's journal, `sample` picks the valid calibration
sample, `recalibrate` registers a new version with refitted temperature and thresholds.
See docs/feedback.md.
"""
