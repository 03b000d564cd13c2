"""Observability: Prometheus metrics, structured logs."""
