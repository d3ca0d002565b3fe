"""triage: PACS export -> geometrically correct volumes -> calibrated, device-robust worklists."""

__version__ = "0.1.0"
