"""The `reach` console script: patch for gevent first when this process serves or works."""

from __future__ import annotations

import sys

GEVENT_COMMANDS = {"worker"}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in GEVENT_COMMANDS:
        from gevent import monkey

        monkey.patch_all()
    from service.cli import main as cli

    cli()


if __name__ == "__main__":
    main()
