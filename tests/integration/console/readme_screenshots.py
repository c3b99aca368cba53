"""Screenshots of every console page for the README, taken against a running worker with
the demo's data (`make run`, then the two links `rater console links` prints):

    python -m tests.integration.console.readme_screenshots OWNER_LINK READER_LINK \\
        [--out docs/console]

It follows the pages' own links (the first billing account, its first subscription), so
it needs no ids. Debian's Chromium, as in the browser tests.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Page, sync_playwright

from tests.integration.console.browser import CHROMIUM, LAUNCH_ARGS

VIEWPORT = {"width": 1360, "height": 860}


def shoot(page: Page, out: Path, name: str) -> None:
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    print(f"{out / name}.png  {page.url}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("owner_link")
    parser.add_argument("reader_link")
    parser.add_argument("--out", default="docs/console")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = "{0.scheme}://{0.netloc}".format(urlsplit(args.owner_link))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            anonymous = browser.new_page(viewport=VIEWPORT)
            anonymous.goto(f"{base}/console/sign-in")
            shoot(anonymous, out, "sign-in")

            owner = browser.new_context(viewport=VIEWPORT).new_page()
            owner.goto(args.owner_link)
            shoot(owner, out, "accounts")
            owner.click("table.grid tbody a >> nth=0")
            shoot(owner, out, "account")
            subscription = owner.locator("table.subscriptions tbody a").first.get_attribute(
                "href")
            owner.click("a:has-text('Cost management')")
            shoot(owner, out, "cost-management")
            owner.goto(f"{base}{subscription}")
            shoot(owner, out, "subscription-owner")
            owner.click("a:has-text('Usage report')")
            shoot(owner, out, "usage-report")

            reader = browser.new_context(viewport=VIEWPORT).new_page()
            reader.goto(args.reader_link)
            reader.goto(f"{base}{subscription}")
            shoot(reader, out, "subscription-reader")
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
