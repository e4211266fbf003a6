"""nself-ops: the toolkit's controller side (commands, tables, reports, benchmarks)."""

import logging
import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent

log = logging.getLogger("nself")
if os.environ.get("NSELF_DEBUG"):
    logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
