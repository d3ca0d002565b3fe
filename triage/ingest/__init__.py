"""Ingest: a PACS export -> selected series -> volumes -> normalized, aligned, cached."""
