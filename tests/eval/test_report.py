"""report.html: self-contained, opens in headless Chromium and shows the numbers, curve and samples."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from nexus_llm.eval.report import fmt, loss_curve_svg, read_training_log

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Text(HTMLParser):
    """The visible text of a page (script and style excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def page_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def test_report_is_self_contained(eval_run):
    out, _ = eval_run
    html = (out / "report.html").read_text()
    assert "<script" not in html and "<link" not in html
    assert 'src="http' not in html and "url(http" not in html and "@import" not in html
    assert html.count("<svg") == 1  # the loss curve, inline


def test_training_log_tolerates_a_cut_line_and_reads_validation_loss(tmp_path):
    rows = [{"step": 1, "loss": 3.0, "lr": 1e-3}, {"step": 2, "loss": 2.5, "val_loss": 2.7}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 3, "lo')
    log = read_training_log(str(tmp_path))
    assert log["steps"] == [1, 2] and log["val_loss"] == [2.7] and log["last_loss"] == 2.5
    svg = loss_curve_svg(log)
    assert svg.startswith("<svg") and "training loss" in svg and "validation loss" in svg
    assert read_training_log(str(tmp_path / "missing")) is None


@pytest.mark.browser
@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)"
)
def test_report_opens_in_headless_chromium_and_shows_the_numbers(eval_run, tmp_path):
    out, _ = eval_run
    results = json.loads((out / "results.json").read_text())
    url = (out / "report.html").as_uri()
    flags = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,1900",
    ]  # fmt: skip
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    dom = subprocess.run([*flags, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120)
    text = page_text(dom.stdout)
    assert f"Perplexity {fmt(results['perplexity'])}" in text
    assert f"Bits per byte {fmt(results['bits_per_byte'])}" in text
    acc = results["tasks"]["paraphrase_local"]["metrics"]["acc"]
    assert f"paraphrase_local acc {fmt(acc)}" in text
    assert "Once upon a time" in text and "The quick brown fox" in text
    assert "training loss" in text and "40 logged steps" in text
