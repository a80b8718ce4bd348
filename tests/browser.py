"""Rendering an HTML report in a real headless browser (Debian's ``chromium``) and reading what loaded.

The report is opened in an iframe of a small checker page; once it has loaded (images included), the checker
writes what the browser sees (tables, images and which of them failed to load, headings) into its own DOM, which
``--dump-dom`` prints.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

_CHECKER = """<!doctype html><html><body><pre id="result">pending</pre>
<iframe id="report" src="{name}" onload="check()" width="1280" height="900"></iframe>
<script>
function check() {{
  const d = document.getElementById("report").contentDocument;
  const imgs = Array.from(d.images);
  const result = {{
    title: d.title,
    tables: d.querySelectorAll("table").length,
    table_rows: d.querySelectorAll("tr").length,
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src")),
    headings: Array.from(d.querySelectorAll("h1, h2, h3")).map(h => h.textContent.trim()),
  }};
  document.getElementById("result").textContent = JSON.stringify(result);
}}
</script></body></html>"""


#: How long a browser check waits for an install still running (``.ci/run`` installs chromium beside the tests).
INSTALL_WAIT_S = 900


def _installed() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium() -> str:
    """The browser's path; skips the test (with the install command) where it is absent.

    Where ``$APTRAY_BROWSER_PENDING`` names a file that does not exist yet, an install is still running (``.ci/run``
    starts one beside the tests): the check waits for that file, at most :data:`INSTALL_WAIT_S`, and looks again.
    """
    pending = os.environ.get("APTRAY_BROWSER_PENDING")
    deadline = time.monotonic() + INSTALL_WAIT_S
    while pending and not Path(pending).exists() and _installed() is None and time.monotonic() < deadline:
        time.sleep(2)
    path = _installed()
    if path:
        return path
    pytest.skip("no headless browser: apt-get install -y chromium (.ci/run installs it)")


def render(report: Path) -> dict[str, Any]:
    """What a browser shows of ``report``: title, tables, table rows, images, broken images, headings."""
    checker = report.with_name(f".check-{report.stem}.html")
    checker.write_text(_CHECKER.format(name=report.name))
    try:
        proc = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
             "--virtual-time-budget=15000", "--dump-dom", checker.resolve().as_uri()],
            capture_output=True, text=True, timeout=120)
    finally:
        checker.unlink(missing_ok=True)
    match = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
    assert match and match.group(1) != "pending", (proc.stdout[-2000:], proc.stderr[-2000:])
    return dict(json.loads(html.unescape(match.group(1))))
