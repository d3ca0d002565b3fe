"""Synthetic multi-device PACS exports with ground truth."""
