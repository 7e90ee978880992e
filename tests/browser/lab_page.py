"""Opens `dcr lab` in headless Chromium as an analyst would, and reports what the page shows.

    lab_page.py URL NOTEBOOK SCREENSHOT

URL is what `dcr lab` printed (with its token). The script opens NOTEBOOK in the lab, waits for
its kernel, runs every cell from the Run menu, waits for the last cell's output, saves a
screenshot of the page, and prints one JSON object: the page title, the file browser's entries,
the kernel's name, and the rows of the table the last cell rendered. The Rust test
(tests/tests/dcr_lab.rs) decides what they must be.

The browser is Debian's Chromium, started with the flags this machine's closed network needs
(no background networking, component updates or sync, which would otherwise try Google's hosts).
"""

import json
import sys

from playwright.sync_api import sync_playwright

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 120_000


def main(url, notebook, screenshot):
    base, token = url.split("/lab?token=", 1)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 960})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{base}/lab/tree/{notebook}?token={token}")
        page.wait_for_selector(".jp-DirListing-item")
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        # The kernel is up when the notebook's status says idle.
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        last = page.locator(".jp-Notebook .jp-CodeCell").last
        table = last.locator(".jp-OutputArea-output table")
        error = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        # The last cell's table, or a traceback in any cell.
        table.or_(error).first.wait_for()
        page.screenshot(path=screenshot, full_page=True)
        rows = [
            [c.inner_text().strip() for c in row.locator("th, td").all()]
            for row in table.locator("tr").all()
        ] if table.count() else []
        report = {
            "title": page.title(),
            "files": [e.get_attribute("title") or e.inner_text() for e in page.locator(".jp-DirListing-itemText").all()],
            "kernel": page.locator(".jp-KernelName").first.inner_text().strip(),
            "table": rows,
            "errors": [e.inner_text() for e in error.all()],
        }
        browser.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:4])
