"""Make the sample API importable the way gunicorn sees it (``--chdir sample_api``)."""

import sys
from pathlib import Path

SAMPLE_API_DIR = Path(__file__).resolve().parents[2] / "sample_api"

if str(SAMPLE_API_DIR) not in sys.path:
    sys.path.insert(0, str(SAMPLE_API_DIR))
