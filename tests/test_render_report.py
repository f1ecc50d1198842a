"""Tests for scripts/render_report.py with a stand-in `chromium` on the PATH (the real browser is
not needed): a screenshot it writes is kept, one it fails to write is an error, not an old file."""

import importlib.util
import stat
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "render_report.py"


@pytest.fixture
def render_report():
    spec = importlib.util.spec_from_file_location("render_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_chromium(tmp_path, monkeypatch):
    """Install a `chromium` on the PATH that runs ``body`` (bash) with the browser's arguments."""

    def install(body: str) -> None:
        binary = tmp_path / "bin" / "chromium"
        binary.parent.mkdir(exist_ok=True)
        binary.write_text(f"#!/bin/bash\n{body}\n")
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", f"{binary.parent}:/usr/bin:/bin")

    return install


WRITE_SCREENSHOT = """for arg in "$@"; do
  case "$arg" in --screenshot=*) printf 'png' > "${arg#--screenshot=}";; esac
done"""


@pytest.fixture
def page(tmp_path):
    index = tmp_path / "report" / "index.html"
    index.parent.mkdir()
    index.write_text("<html><body>report</body></html>")
    return index


def test_writes_the_screenshot_chromium_took(render_report, fake_chromium, page, tmp_path, capsys):
    fake_chromium(WRITE_SCREENSHOT)
    out = tmp_path / "shots" / "page.png"
    render_report.main([str(page), str(out), "--width", "800"])
    assert out.read_text() == "png"
    assert capsys.readouterr().out.strip() == str(out)


def test_a_screenshot_chromium_did_not_write_is_an_error_not_the_old_file(
    render_report, fake_chromium, page, tmp_path
):
    fake_chromium("exit 0")
    out = tmp_path / "page.png"
    out.write_text("an old screenshot")
    with pytest.raises(SystemExit, match="chromium failed"):
        render_report.main([str(page), str(out)])
    assert not out.exists()


def test_a_browser_that_hangs_is_a_one_line_error(render_report, fake_chromium, page, tmp_path):
    fake_chromium("exec sleep 30")
    render_report.TIMEOUT_S = 0.5
    with pytest.raises(SystemExit, match="did not finish within 0.5 s"):
        render_report.main([str(page), str(tmp_path / "page.png")])


def test_no_browser_on_the_path_says_how_to_install_one(render_report, page, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SystemExit, match="apt-get install chromium"):
        render_report.main([str(page), str(tmp_path / "page.png")])
