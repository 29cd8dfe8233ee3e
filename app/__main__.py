"""`python -m app --db FILE [--host H] [--port P]`: serve the dashboard."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import uvicorn

from app.config import LOOPBACK, parse_args
from app.main import create_app
from unitscope.flags import SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, build the app and serve it until interrupted; 1 for a bad setting."""
    try:
        settings = parse_args(argv)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not settings.db.exists():
        print(f"note: {settings.db} does not exist yet; pages answer 503 until the worker writes it",
              file=sys.stderr)
    if settings.host != LOOPBACK:
        print(f"warning: listening on {settings.host}, not only loopback; the dashboard has no login",
              file=sys.stderr)
    print(f"unitscope dashboard on http://{settings.host}:{settings.port}/  (db: {settings.db})", file=sys.stderr)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
