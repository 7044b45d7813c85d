"""`reach demo`: the embedded service and two simulated phones tell the story of one bid."""

from __future__ import annotations

from service.cli import main


@main.command("demo", with_appcontext=False)  # its service is its own, never this shell's
def demo() -> None:
    """Start the embedded service and two simulated phones; print the story of one bid."""
    from service.demo import run_demo

    run_demo()
