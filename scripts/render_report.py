#!/usr/bin/env python3
"""Render a report page to a PNG with headless Chromium, to check it in a real browser.

    scripts/render_report.py results/quickstart/report/index.html out.png --width 800
    scripts/render_report.py INDEX_HTML OUT.png --width 1400 --height 1800 --colors 256

The screenshot is the top ``--height`` pixels of the page laid out ``--width`` pixels wide
(Chromium's ``--screenshot --window-size``). ``--colors N`` stores it with a palette of N colours
(Pillow), for a small file to check in. Prints the PNG's path. Needs the ``chromium`` (Debian)
or ``chromium-browser`` binary on the PATH.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser")
TIMEOUT_S = 120


def find_browser() -> str:
    """The path of the first Chromium binary on the PATH; exits with a message if none is."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    sys.exit(
        f"render_report: no {' or '.join(BROWSERS)} on the PATH; install Chromium "
        "(Debian: apt-get install chromium) to render the page"
    )


def render(page: Path, out: Path, width: int, height: int) -> Path:
    """Screenshot the top ``height`` pixels of ``page`` laid out ``width`` pixels wide into
    ``out``, with a throwaway browser profile; exits with Chromium's output if it fails or
    with a message if it runs past ``TIMEOUT_S``."""
    out.unlink(missing_ok=True)  # an old screenshot must not pass for this one
    with tempfile.TemporaryDirectory(prefix="render-report-") as profile:
        command = [
            find_browser(),
            "--headless",
            "--no-sandbox",  # root in a container has no user namespaces for the sandbox
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out.resolve()}",
            page.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            sys.exit(f"render_report: chromium did not finish within {TIMEOUT_S} s")
    if done.returncode != 0 or not out.is_file():
        sys.exit(f"render_report: chromium failed ({done.returncode}):\n{done.stderr.strip()}")
    return out


def quantize(path: Path, colors: int) -> None:
    """Rewrite the PNG at ``path`` with an adaptive palette of ``colors`` colours."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="the report's index.html")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1400, help="window width in px")
    parser.add_argument("--height", type=int, default=2000, help="screenshot height in px")
    parser.add_argument("--colors", type=int, help="store with a palette of this many colours")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        sys.exit(f"render_report: {args.page} not found")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    render(args.page, args.out, args.width, args.height)
    if args.colors:
        quantize(args.out, args.colors)
    print(args.out)


if __name__ == "__main__":
    main()
