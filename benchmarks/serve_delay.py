"""Delay from the last answer of a round to the next batch in Label Studio: polling vs webhooks.

    .venv/bin/python benchmarks/serve_delay.py [--rounds 8] [--poll-interval 5] [--debounce 1] [--port 8096]

Starts a fresh local Label Studio (LocalServer, 127.0.0.1, temporary folder; stopped at the end, also on error),
then runs the same digits loop twice, each in its own project:

- polling: `al-loop run` (run_loop, wait=True) pulls every annotator.poll_interval seconds;
- webhooks: `al-loop serve` (Service, serve.connect: true, fallback off) syncs serve.debounce seconds after the last
  webhook.

A "person" (a bot user answering through the API, al_loop.labelstudio.bots) answers every task of a round, starting
a random 0 to poll_interval seconds (seeded, the same draws in both modes) after the round is in Label Studio, so
that the last answer is not in phase with the poll (a real person takes minutes). The delay of a round is measured
from the return of its last answer's API call to the moment the next round's tasks are all listed by Label Studio
(polled every 50 ms). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

import yaml

from al_loop.annotators.labelstudio import LabelStudioAnnotator
from al_loop.api import load_config, prepare, run_loop
from al_loop.config import BotsConfig, Config
from al_loop.labelstudio.bots import Bots
from al_loop.labelstudio.connection import connect
from al_loop.labelstudio.server import LocalServer
from al_loop.ledger import Ledger
from al_loop.serve.service import Service

TOKEN_ENV = "AL_LOOP_BENCH_LABEL_STUDIO_TOKEN"
BATCH = 10
INITIAL = 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_config(folder: Path, server: LocalServer, mode: str, rounds: int, poll_interval: float,
                debounce: float) -> Config:
    data = {
        "dataset": {"name": "digits", "test_size": 0.3},
        "loop": {"strategy": "margin", "batch_size": BATCH, "initial_size": INITIAL,
                 "budget": INITIAL + BATCH * rounds},
        "annotator": {"kind": "labelstudio", "url": server.url, "token_env": TOKEN_ENV, "poll_interval": poll_interval,
                      "timeout": 600, "project_title": f"serve delay {mode}"},
        "serve": {"port": free_port(), "connect": True, "debounce": debounce, "fallback_interval": 0},
        "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}", "experiment": "serve-delay"},
        "output_dir": str(folder / mode),
    }
    path = folder / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def pushed(config: Config, round_index: int) -> dict[str, str | None] | None:
    """The waiting tasks once round `round_index` is queued and pushed (None before)."""
    path = config.output_dir / config.run_name / "ledger.sqlite"
    if not path.is_file():
        return None
    try:
        with Ledger.read_only(path) as ledger:
            if len(ledger.rounds()) != round_index + 1 or ledger.unpushed():
                return None
            return ledger.pending()
    except sqlite3.OperationalError:  # its tables are being created
        return None


def measure(config: Config, rounds: int, think_max: float, timeout: float = 300.0) -> list[float]:
    """Answer each round as soon as it is pushed; the delays from each round's last answer to the next round's
    tasks all listed in Label Studio."""
    deadline = time.monotonic() + timeout
    pending = None
    while pending is None:
        if time.monotonic() > deadline:
            raise TimeoutError("round 0 never appeared")
        pending = pushed(config, 0)
        time.sleep(0.1)
    conn = connect(config.annotator, config.output_dir)
    with Ledger.read_only(config.output_dir / config.run_name / "ledger.sqlite") as ledger:
        project = int(ledger.get_meta("labelstudio_project"))
    workspace = prepare(config)
    truth = dict(zip(workspace.splits.pool.ids, workspace.splits.pool.labels, strict=True))
    person = Bots(conn, project, truth, workspace.classes, BotsConfig(annotators=1), config.seed, prefix="person")
    listing = LabelStudioAnnotator(conn, project, workspace.classes, None)
    delays = []
    think = random.Random(config.seed)
    for round_index in range(rounds):
        time.sleep(think.uniform(0.0, think_max))  # a person does not answer in phase with the poll
        person.answer(pending)
        answered = time.perf_counter()
        while len(listing.tasks_of_round(round_index + 1)) < BATCH:
            if time.monotonic() > deadline:
                raise TimeoutError(f"round {round_index + 1} never appeared")
            time.sleep(0.05)
        delays.append(time.perf_counter() - answered)
        while (pending := pushed(config, round_index + 1)) is None:
            time.sleep(0.05)
    person.answer(pending)  # the last round too: the run finishes (its budget), nothing keeps polling
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--poll-interval", type=float, default=5.0, help="annotator.poll_interval (the default)")
    parser.add_argument("--debounce", type=float, default=1.0, help="serve.debounce (the default)")
    parser.add_argument("--port", type=int, default=8096)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = LocalServer(folder / "labelstudio", args.port)
        server.start()
        os.environ[TOKEN_ENV] = server.credentials().token
        try:
            config = make_config(folder, server, "polling", args.rounds, args.poll_interval, args.debounce)
            runner = threading.Thread(target=run_loop, args=(config,), daemon=True)
            runner.start()
            rows.append((f"polling (`al-loop run`, poll_interval {args.poll_interval:g} s)",
                         measure(config, args.rounds, args.poll_interval)))
            runner.join(300)
            if runner.is_alive():
                raise RuntimeError("the polling run did not finish after its last round was answered")
            config = make_config(folder, server, "webhooks", args.rounds, args.poll_interval, args.debounce)
            service = Service(config)
            service.start()
            try:
                rows.append((f"webhooks (`al-loop serve`, debounce {args.debounce:g} s)",
                             measure(config, args.rounds, args.poll_interval)))
            finally:
                service.stop()
        finally:
            server.stop()
    print(f"\nDelay from the last answer of a round to the next batch listed in Label Studio ({args.rounds} rounds "
          f"of {BATCH} digits tasks each; local Label Studio 1.23, SQLite, {os.cpu_count()} cores)\n")
    print("| mode | median s | mean s | min s | max s |")
    print("|---|---:|---:|---:|---:|")
    for name, delays in rows:
        print(f"| {name} | {statistics.median(delays):.2f} | {statistics.mean(delays):.2f} | {min(delays):.2f} | "
              f"{max(delays):.2f} |")


if __name__ == "__main__":
    main()
