"""Process-wide logging format; secrets are SecretStr and never formatted in."""
from __future__ import annotations

import logging
import os


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("pgserver", "alembic.runtime.plugins", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
