"""Writing a benchmark's JSON result with the date, the load and the versions beside the rows."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def write(path, start: str, rows, **extra) -> None:
    """``path`` <- ``{date_start, date_end, load_average_end, nproc, versions, **extra, rows}``."""
    import gradflow as gf

    result = {
        "date_start": start,
        "date_end": now(),
        "load_average_end": os.getloadavg(),
        "nproc": os.cpu_count(),
        "versions": gf.versions(),
        **extra,
        "rows": rows,
    }
    Path(path).write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
