"""Headless Chromium for the report: a PNG screenshot of report.html, or the DOM the browser built from
it. Every run gets a fresh profile and a resolver that maps every host name to nothing, so a page that
tried to fetch from outside would fail rather than reach the network."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import UserError

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--hide-scrollbars", "--force-device-scale-factor=1",
         "--host-resolver-rules=MAP * ~NOTFOUND")
TIMEOUT_S = 120


def find_chromium() -> str:
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise UserError("no Chromium found for the screenshot; install it (Debian: apt-get install chromium) or "
                    "drop --screenshot")


def run_chromium(page: Path, *args: str, net_log: Path | None = None) -> subprocess.CompletedProcess:
    """Open `page` (a local file) in headless Chromium with `args`; `net_log` records every network event."""
    with tempfile.TemporaryDirectory(prefix="edge-pack-chromium-") as profile:
        argv = [find_chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
        if net_log is not None:
            argv.append(f"--log-net-log={net_log}")
        argv.append(Path(page).resolve().as_uri())
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UserError(f"Chromium did not finish rendering {page} within {TIMEOUT_S} s") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise UserError(f"Chromium failed to render {page} ({last})")
    return proc


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1800, net_log: Path | None = None) -> Path:
    """Save a PNG of the top `height` pixels of `page` rendered `width` pixels wide."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    run_chromium(page, f"--window-size={width},{height}", f"--screenshot={png}", net_log=net_log)
    if not png.is_file():
        raise UserError(f"Chromium wrote no screenshot of {page}")
    return png


def dump_dom(page: Path, net_log: Path | None = None) -> str:
    """The document as Chromium parsed and laid it out (serialised back to HTML)."""
    return run_chromium(page, "--dump-dom", net_log=net_log).stdout
