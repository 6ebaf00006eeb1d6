"""Time the prepare stage on `synthetic` at 1e4, 1e5 and 1e6 rows x 20 features.

Each size runs in a fresh subprocess, so peak RSS (ru_maxrss) is that run's own. Reports
seconds, peak RSS, the size of the raw generated arrays (float64 X + y, as sklearn makes
them), the data-driven RSS (peak minus the peak of a 1,000-row run, which holds the same
imported libraries) relative to the raw arrays, and the time exponent between sizes
(1.0 = linear, below 1 = fixed costs still dominate).

    .venv/bin/python benchmarks/prepare_scaling.py
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
import tempfile
import textwrap
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = (10_000, 100_000, 1_000_000)
N_FEATURES = 20

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from stages import config, prepare
    n, out, measure = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
    cfg = config.validate({"data": {"source": "synthetic", "synthetic": {
        "n_samples": n, "n_features": N_FEATURES, "n_informative": 10, "n_classes": 3}}})
    t0 = time.perf_counter()
    if measure:
        prepare.run(cfg, out)
    secs = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": secs, "peak_rss": rss}))
""".replace("N_FEATURES", str(N_FEATURES))
)


def measure(n: int, do_work: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), f"{tmp}/p", str(int(do_work))],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    idle = measure(SIZES[0], do_work=False)["peak_rss"]
    fixed = measure(1_000, do_work=True)["peak_rss"]
    rows = []
    for n in SIZES:
        r = measure(n, do_work=True)
        raw = n * N_FEATURES * 8 + n * 8
        rows.append({"rows": n, **r, "raw_bytes": raw, "data_rss": r["peak_rss"] - fixed})
    print(
        f"# prepare scaling, {date.today()}, {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}; RSS: idle interpreter {idle / 2**20:.0f} MiB, "
        f"1,000-row run (libraries loaded) {fixed / 2**20:.0f} MiB"
    )
    print(
        "| rows | seconds | peak RSS MiB | raw arrays MiB | data RSS / raw | "
        "time exponent vs previous |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    prev = None
    for r in rows:
        exp = "" if prev is None else f"{math.log(r['seconds'] / prev['seconds'], 10):.2f}"
        print(
            f"| {r['rows']:,} | {r['seconds']:.2f} | {r['peak_rss'] / 2**20:.0f} | "
            f"{r['raw_bytes'] / 2**20:.0f} | {r['data_rss'] / r['raw_bytes']:.2f} | "
            f"{exp} |"
        )
        prev = r


if __name__ == "__main__":
    main()
