"""Screenshots of the MLflow UI on the quickstart's store, for the README (docs/img/mlflow_*.png).

Run after `al-loop run configs/quickstart.yaml` and `al-loop compare configs/quickstart.yaml`:

    apt-get install -y chromium            # or set CHROMIUM to a Chrome/Chromium binary
    .venv/bin/pip install playwright       # drives that browser; no browser download needed
    .venv/bin/python docs/screenshots.py [--store runs/quickstart/mlflow.db] [--experiment al-loop-quickstart]

It starts `mlflow ui` on 127.0.0.1 (a free port) on the store, opens the experiment in the training view, expands
the newest comparison's parent run, sorts the runs by AUBC, then shows its children's curves in the chart view,
and stops the server.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
# columns toggled in the runs table: the summary metrics on, three attributes off (room)
COLUMNS = ("aubc", "labels_to_95pct", "full_pool_accuracy", "accuracy", "Dataset", "Source", "Models")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_ui(store: Path, port: int) -> subprocess.Popen:
    """`mlflow ui` on the store, waited for until it answers (the first start migrates the store: ~30 s)."""
    mlflow = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen([str(mlflow), "ui", "--backend-store-uri", f"sqlite:///{store}", "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
                return server
        except OSError:
            time.sleep(1)
    server.terminate()
    raise SystemExit(f"mlflow ui did not answer on 127.0.0.1:{port} within 180 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=ROOT / "runs" / "quickstart" / "mlflow.db")
    parser.add_argument("--experiment", default="al-loop-quickstart")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    client = MlflowClient(f"sqlite:///{args.store.resolve()}")
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(f"no experiment {args.experiment!r} in {args.store}: run the quickstart and compare first")
    parents = client.search_runs([experiment.experiment_id], filter_string="tags.`al_loop.kind` = 'compare'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        raise SystemExit("no comparison in the experiment: run `al-loop compare configs/quickstart.yaml` first")
    parent = parents[0].info
    browser_path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        raise SystemExit("no Chromium found: apt-get install -y chromium, or set CHROMIUM to a Chrome binary")
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = start_ui(args.store.resolve(), port)
    runs = f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            # 1. the runs table in the training view, the comparison's parent expanded, its summary metrics as columns
            page.goto(runs, wait_until="load")
            page.wait_for_selector(f"text={parent.run_name}", timeout=60_000)
            close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
            if close.count():
                close.first.click()
            page.locator('button[data-component-id$="runnamecellrenderer.tsx_46"]').first.click()
            page.locator('[data-testid="column-selection-dropdown"]').first.click()
            search = page.get_by_placeholder("Search columns")
            for metric in COLUMNS:
                search.fill(metric)
                page.wait_for_timeout(300)
                option = page.get_by_role("dialog").get_by_text(metric, exact=True)
                if option.count():  # e.g. labels_to_95pct exists only where some run reached it
                    option.first.click()
            page.keyboard.press("Escape")
            page.wait_for_timeout(1_500)
            page.screenshot(path=str(args.out / "mlflow_runs.png"))
            # 2. the chart view: the curves of the runs listed overlaid (MLflow shows the first 10; eye icons)
            page.locator('label:has(input[value="CHART"])').first.click()
            page.wait_for_timeout(6_000)
            # sections of prefixed metrics (annotator/…, auto/…) come first: scroll to the curves, in "Model metrics"
            page.get_by_text(re.compile(r"^Model metrics")).first.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(2_000)
            page.screenshot(path=str(args.out / "mlflow_charts.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out / 'mlflow_runs.png'} and {args.out / 'mlflow_charts.png'}")


if __name__ == "__main__":
    main()
