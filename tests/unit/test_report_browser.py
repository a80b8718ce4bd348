"""The browser check itself can fail: a page with a missing image is reported broken, a drawn plot is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.browser import render


def test_browser_reports_broken_images_and_tables(tmp_path: Path) -> None:
    from aptray.evaluate.plots import roc_pr

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(500), np.ones(5)]
    png = roc_pr([("ae", y, rng.random(505) + y)], "t")
    assert png is not None
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "roc.png").write_bytes(png)
    page = tmp_path / "report.html"
    page.write_text("<html><head><title>t</title></head><body><h1>Report</h1><table><tr><td>1</td></tr></table>"
                    '<img src="plots/roc.png"><img src="plots/missing.png"></body></html>')
    shown = render(page)
    assert shown["title"] == "t" and shown["tables"] == 1 and shown["headings"] == ["Report"]
    assert shown["images"] == 2 and shown["broken"] == ["plots/missing.png"]
