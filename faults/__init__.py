"""Fault suite for the loopback topology (docs/reliability.md): python -m faults.run."""
