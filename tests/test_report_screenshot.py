"""workflow/scripts/report_screenshot.py: the script it adds to a copy of the report, and its refusals.

The screenshot itself needs a headless Chromium, which CI machines need not have: the measurement is in
docs/pipeline.md, "The report"."""

from __future__ import annotations

import json

import pytest

from cases import workflow_script as script

REPORT = """<html><head><title>Snakemake Report</title></head><body><div id="app"></div>
<script>var results = {"r/t1.html": {"filename": "table1.html", "data_uri": "data:text/html,<b>T1</b>"}};</script>
<script>var categories = {"Tables": {"Other": ["r/t1.html"]}};</script>
</body></html>"""


def test_the_added_script_opens_the_category_and_the_table_in_one_state_change():
    rs = script("report_screenshot")
    html = rs.with_view(REPORT, "Tables", 'table1".html')
    head = REPORT[:REPORT.rindex("</body>")]
    added = html[len(head):]
    assert html.startswith(head) and html.endswith("</body></html>") and added.startswith("<script>")
    assert html.count("app.setView(") == 1 and "app.showCategory(" not in html  # no two racing state changes
    assert json.dumps("tables") in added and json.dumps('table1".html') in added  # escaped as JSON strings
    with pytest.raises(ValueError, match="not a Snakemake report"):
        rs.with_view("<html><body>plain page</body></html>", "Tables", "table1.html")


def test_without_a_browser_it_says_what_to_install(monkeypatch, tmp_path, capsys):
    rs = script("report_screenshot")
    monkeypatch.setattr(rs.shutil, "which", lambda name: None)
    (tmp_path / "report.html").write_text(REPORT)
    assert rs.main([str(tmp_path / "report.html"), str(tmp_path / "shot.png")]) == 2
    err = capsys.readouterr().err
    assert "no headless browser found" in err and "chromium" in err and not (tmp_path / "shot.png").exists()
