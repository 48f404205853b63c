"""A screenshot of a Snakemake report's view of one table, as a reader sees it at a given window width.

The report (``make report``) is one HTML file whose page is drawn by a React app from the embedded ``results``
and ``categories``; which view it shows is the app's state, not the address.  So a copy of the report gets one
more script that, once the page has loaded, opens the category whose name contains ``--category`` ("Tables")
and shows the result whose file is ``--table`` (``table1.html``) as a click on it would, and headless Chromium
takes the screenshot.  Used to check that the sidebar leaves a table readable at 1400 px (issue 37; the
measurement is in docs/pipeline.md, "The report").

    python workflow/scripts/report_screenshot.py results/report.html results/report_tables_1400.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: opens the category and the table in one state change of the app (what app.showCategory and a click on a result
#: set: two calls would race, the second overwriting the first's menu with the state before it)
SCRIPT = """<script>
window.addEventListener("load", function () {{
  setTimeout(function () {{
    var category = Object.keys(categories).find(function (c) {{ return c.toLowerCase().indexOf({category}) >= 0; }});
    var path = Object.keys(results).find(function (p) {{ return results[p].filename === {table}; }});
    if (category === undefined || path === undefined) {{
      document.title = "report_screenshot: not found";
      return;
    }}
    var single = isSingleSubcategory(category);  // as app.showCategory decides, in one state change
    var subcategory = single ? Object.keys(categories[category])[0] : undefined;
    app.setView({{navbarMode: single ? "subcategory" : "category", category: category, subcategory: subcategory,
                 content: "html", contentPath: results[path].data_uri, resultPath: path}});
    document.title = "report_screenshot: shown";
  }}, 500);
}});
</script>
"""


def browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def with_view(html: str, category: str, table: str) -> str:
    """The report's HTML with the script that opens ``category`` and ``table`` before ``</body>``."""
    if "var results" not in html or "var categories" not in html or "</body>" not in html:
        raise ValueError("not a Snakemake report: no embedded results and categories")
    script = SCRIPT.format(category=json.dumps(category.lower()), table=json.dumps(table))
    at = html.rindex("</body>")
    return html[:at] + script + html[at:]


def screenshot(report: Path, out: Path, width: int = 1400, height: int = 900, category: str = "table",
               table: str = "table1.html", timeout: float = 600.0) -> Path:
    """Write the screenshot of ``report`` showing ``table`` at ``width`` × ``height`` pixels to ``out``."""
    exe = browser()
    if exe is None:
        raise FileNotFoundError(f"no headless browser found (looked for {', '.join(BROWSERS)}); "
                                "install Chromium, e.g. `apt-get install chromium`")
    html = with_view(Path(report).read_text(encoding="utf-8"), category, table)
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html, encoding="utf-8")
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp}/profile", f"--window-size={width},{height}",
               "--virtual-time-budget=15000", f"--screenshot={out}", page.as_uri()]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0 or not out.exists():
        raise RuntimeError(f"{exe} exited with {res.returncode} and no screenshot: {res.stderr.strip()[-500:]}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=900)
    p.add_argument("--category", default="table", help="a part of the category's name (case ignored)")
    p.add_argument("--table", default="table1.html", help="the file name of the result to show")
    args = p.parse_args(argv)
    try:
        out = screenshot(args.report, args.out, args.width, args.height, args.category, args.table)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"report_screenshot: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
