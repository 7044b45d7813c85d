"""`python -m service.cli`: the `reach` command, with the app taken from wsgi.py."""

import os

from service.cli import main

if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("FLASK_APP", "wsgi:app")
    main()
