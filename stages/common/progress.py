"""The one progress bar of the stages: tqdm on stderr in a terminal, nothing in CI or a log.

`disable=None` is tqdm's own rule (off when stderr is not a TTY); `CI` switches it off too,
as tune's trial bar does. Each stage still writes its log line per unit of work: the bar
only says how far a long step has got.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable


def bar(iterable: Iterable | None = None, *, desc: str, unit: str, total: int | None = None):
    from tqdm import tqdm

    return tqdm(
        iterable,
        desc=desc,
        unit=unit,
        total=total,
        disable=True if os.environ.get("CI") else None,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    )
