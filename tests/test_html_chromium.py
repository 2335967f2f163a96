"""The HTML pages as a person sees them: headless Chromium opens report.html and the
leaderboard, with no network, and must find no script or console errors, every embedded
image decoded, and (on the leaderboard) a working sort. A screenshot of each page is kept in
the test's tmp folder.

`.ci/run` installs Debian's chromium; where it could not be installed this test skips.
"""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cnnlab.cli import main
from conftest import tiny_experiment

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0"]

# Injected first into <head> of a copy of each page: records errors (script errors, failed or
# blocked loads, console.error) and, after load, whether every image decoded; on a sortable
# table it clicks the "test acc" header twice and records the first row after each click.
PROBE = """<script>
(function () {
  var errors = [];
  function save() { document.documentElement.setAttribute('data-errors', JSON.stringify(errors)); }
  window.addEventListener('error', function (e) {
    errors.push(e.message || ('failed to load ' + ((e.target && (e.target.src || e.target.href)) || '?')));
    save();
  }, true);
  document.addEventListener('securitypolicyviolation', function (e) {
    errors.push('blocked ' + e.blockedURI); save();
  });
  var consoleError = console.error;
  console.error = function () { errors.push(Array.prototype.join.call(arguments, ' ')); save();
                                consoleError.apply(console, arguments); };
  window.addEventListener('load', function () {
    var images = Array.prototype.slice.call(document.images);
    var decoded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
    var root = document.documentElement;
    root.setAttribute('data-images', decoded.length + '/' + images.length);
    var table = document.querySelector('table.sortable');
    if (table) {
      var header = Array.prototype.filter.call(table.tHead.rows[0].cells,
        function (th) { return th.textContent.trim() === 'test acc'; })[0];
      header.click();
      root.setAttribute('data-sorted-1', table.tBodies[0].rows[0].cells[0].textContent);
      header.click();
      root.setAttribute('data-sorted-2', table.tBodies[0].rows[0].cells[0].textContent);
    }
    save();
    root.setAttribute('data-probe', 'done');
  });
})();
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium with apt-get; "
                "apt was unavailable or the install failed here)")


def open_page(browser: str, page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{page.stem}-{len(args)}"
    return subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=120)


def probe(browser: str, page: Path, tmp: Path) -> dict[str, str]:
    text = page.read_text(encoding="utf-8")
    probed = tmp / f"probed-{page.name}"  # elsewhere than the run folder: it must stand alone
    probed.write_text(text.replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")
    result = open_page(browser, probed, tmp, "--dump-dom", "--virtual-time-budget=5000")
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r"<html([^>]*)>", result.stdout)
    assert match, result.stdout[:500]
    attrs = {k: html.unescape(v) for k, v in re.findall(r'([\w-]+)="([^"]*)"', match.group(1))}
    console = [line for line in result.stderr.splitlines()
               if "CONSOLE" in line and re.search(r"Uncaught|Refused|Error", line)]
    assert not console, console
    return attrs


def screenshot(browser: str, page: Path, tmp: Path) -> Path:
    png = tmp / f"{page.stem}.png"
    result = open_page(browser, page, tmp, f"--screenshot={png}", "--window-size=1280,2000")
    assert result.returncode == 0 and png.is_file() and png.stat().st_size > 10_000, result.stderr[-2000:]
    return png


@pytest.fixture
def pages(tmp_path):
    """report.html of a digits run (against another) and the leaderboard of both."""
    def run(name, lr):
        cfg = tiny_experiment(tmp_path, {"name": "digits", "val_split": 0.2, "test_split": 0.2},
                              train={"epochs": 2, "lr": lr, "threads": 1, "batch_size": 64},
                              name=name)
        path = tmp_path / f"{name.replace('/', '_')}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        main_ok(["run", str(path)])
        return next((tmp_path / "runs" / name).glob("*/metrics.json")).parent

    good, poor = run("page/good", 1e-2), run("page/poor", 1e-4)
    main_ok(["report", str(good), "--against", str(poor)])
    main_ok(["report", "--leaderboard", str(tmp_path / "runs")])
    return {"report": good / "report.html", "leaderboard": tmp_path / "runs" / "leaderboard.html",
            "good": good, "poor": poor}


def main_ok(argv):
    try:
        main(argv)
    except SystemExit as exc:
        assert not exc.code, argv


def test_pages_render_in_chromium_without_errors(pages, tmp_path):
    browser = chromium()
    report = probe(browser, pages["report"], tmp_path)
    assert report.get("data-probe") == "done", report
    assert json.loads(report["data-errors"]) == []
    assert report["data-images"] == "3/3"  # confusion matrix, curves, hardest images

    board = probe(browser, pages["leaderboard"], tmp_path)
    assert board.get("data-probe") == "done", board
    assert json.loads(board["data-errors"]) == []
    assert board["data-images"] == "1/1"
    accuracy = {name: json.loads((pages[key] / "metrics.json").read_text())["test"]["accuracy"]
                for name, key in (("page/good", "good"), ("page/poor", "poor"))}
    best, worst = sorted(accuracy, key=accuracy.get, reverse=True)
    assert (board["data-sorted-1"], board["data-sorted-2"]) == (best, worst)

    for page in (pages["report"], pages["leaderboard"]):
        screenshot(browser, page, tmp_path)
