"""`triage run`: a PACS export through ingest, the model and the rules into worklists.

See docs/worklist.md. Entry point: `triage.run.pipeline.run_export`.
"""
