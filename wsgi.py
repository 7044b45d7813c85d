"""WSGI entry point: `gunicorn -c deploy/gunicorn.conf.py wsgi:app`."""

import sys

from service import create_app
from service.config import SettingsError

try:
    app = create_app()
except SettingsError as exc:
    # An operator's mistake: say what to set, and let gunicorn stop ("App failed to load",
    # its exit code 4) rather than show a traceback and boot the same mistake again.
    print(f"Error: {exc}", file=sys.stderr)
    raise SystemExit(4) from None
