"""Monitoring in production: run records, drift statistics, alarms and the stop-rule state
(docs/monitoring.md)."""
