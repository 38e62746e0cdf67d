"""The README's dashboard screenshots (light and dark), made from a generated ledger.

    .venv/bin/python scripts/screenshots.py [--out docs]

Fills a ledger in a temporary directory with 4,000 realistic calls over 30 days (the test suite's
generator), starts the real ``tokentrail serve`` on it with a budgets file, and photographs the
page in Debian's headless Chromium (``/usr/bin/chromium``; ``apt-get install chromium``) once per
colour scheme, after the per-call figures and the advice have arrived.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from chromium_support import FLAGS  # noqa: E402
from ledger_data import fill, random_records  # noqa: E402

BUDGETS = """
[[budget]]
name = "daily"
usd = 12.0
window = "1d"
mode = "warn"

[[budget]]
name = "pip_a weekly"
usd = 25.0
window = "7d"
scope = { pipeline = "pip_a" }
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where to write the PNG files")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        ledger = Path(folder) / "ledger.sqlite"
        fill(ledger, random_records(4000, seed=5, days=30))
        budgets = Path(folder) / "budgets.toml"
        budgets.write_text(BUDGETS)
        server = subprocess.Popen(
            [sys.executable, "-m", "tokentrail.cli", "serve", "--ledger", str(ledger), "--port", "0",
             "--budgets", str(budgets)],
            stdout=subprocess.PIPE,
            text=True,
            env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        try:
            url = server.stdout.readline().split()[2]
            for _ in range(300):
                try:
                    urllib.request.urlopen(url + "/healthz", timeout=5).close()
                    break
                except OSError:
                    time.sleep(0.1)
            with sync_playwright() as playwright:
                for scheme in ("light", "dark"):
                    with tempfile.TemporaryDirectory() as profile:
                        context = playwright.chromium.launch_persistent_context(
                            profile,
                            executable_path="/usr/bin/chromium",
                            headless=True,
                            args=list(FLAGS),
                            viewport={"width": 1280, "height": 900},
                            color_scheme=scheme,
                        )
                        page = context.new_page()
                        page.goto(url + "/?whatif=openai:gpt-4o-mini,anthropic:claude-haiku-4-5")
                        for selector in ("#top-calls", "#advice article", "#whatif-table"):
                            page.wait_for_selector(selector, timeout=120_000)
                        target = out / f"dashboard-{scheme}.png"
                        page.screenshot(path=str(target), full_page=True)
                        context.close()
                        print(f"wrote {target}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
