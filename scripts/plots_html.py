"""`dvc plots show` as one self-contained HTML page that renders offline.

dvc-render's page loads vega, vega-lite and vega-embed from cdn.jsdelivr.net, so on a machine
without internet (this project's CI, an air-gapped cluster) every plot is blank. This runs the
real `dvc plots show` with an `--html-template` whose head inlines the same three libraries
from `vl_convert.javascript_bundle()` (the Vega project's own bundle, shipped in the pinned
vl-convert-python wheel), so the page needs no network. Extra arguments go to dvc unchanged
(targets, `--out`, `--open`, ...).

    python scripts/plots_html.py            # -> dvc_plots/index.html
    python scripts/plots_html.py --out d/   # any `dvc plots show` option
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

# vega-lite 5 is what dvc-render's templates declare ($schema .../vega-lite/v5.json)
VEGA_LITE = "5.8"
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC plots</title>
    <script type="text/javascript">
%s
    </script>
    <script type="text/javascript">
        // every rendered chart's Vega view, by its div id, for the browser console and tests
        window.plotViews = {};
        const embed = window.vegaEmbed;
        window.vegaEmbed = (el, spec, opts) => embed(el, spec, opts).then((result) => {
            window.plotViews[String(el).replace(/^#/, "")] = result.view;
            return result;
        });
    </script>
    <style>
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def template(path: Path) -> Path:
    """Write the offline page template (no `{scripts}`: dvc's CDN tags are left out)."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE)
    path.write_text(PAGE % bundle.replace("</script", "<\\/script"), encoding="utf-8")
    return path


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="reprolab-plots-") as tmp:
        page = template(Path(tmp) / "offline.html")
        cmd = [sys.executable, "-m", "dvc", "plots", "show", "--html-template", str(page), *argv]
        return subprocess.run(cmd, env=os.environ.copy()).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
