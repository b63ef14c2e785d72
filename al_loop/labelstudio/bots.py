"""Simulated annotators working through the Label Studio API: bot users answer pushed tasks from the
label column, with a given accuracy, so demos and tests exercise the real push -> annotate -> pull path.
Like people in the labeling stream, as many bots answer a task as its overlap asks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from al_loop.annotators.draws import keyed_rng, noisy_answer
from al_loop.config import BotsConfig
from al_loop.errors import DataError
from al_loop.labelstudio.connection import Connection, call, dm_filters
from al_loop.labelstudio.project import CHOICES_NAME, TEXT_NAME

BOT_DOMAIN = "bots.al-loop.local"


class Bots:
    """Bot users (`<prefix>1@bots.al-loop.local`, ...) of a project; each task is answered by as many of them
    as its overlap asks, at most once each."""

    def __init__(self, conn: Connection, project_id: int, truth: Mapping[str, str | None], classes: Sequence[str],
                 config: BotsConfig, seed: int, prefix: str = "bot") -> None:
        missing = sum(1 for v in truth.values() if v is None)
        if missing:
            raise DataError(f"annotator.simulate needs a label for every pool row; {missing} row(s) have none")
        self.conn = conn
        self.project_id = project_id
        self.truth = dict(truth)
        self.classes = list(classes)
        self.config = config
        self.seed = seed
        self.prefix = prefix
        self.user_ids = self._ensure_users()

    def _ensure_users(self) -> list[int]:
        client = self.conn.client
        existing = {u.email: int(u.id) for u in call(lambda: list(client.users.list()), self.conn.url, "list users")}
        ids = []
        for bot in range(self.config.annotators):
            email = f"{self.prefix}{bot + 1}@{BOT_DOMAIN}"
            if email not in existing:
                user = call(lambda e=email, b=bot: client.users.create(
                    username=e.split("@")[0], email=e, first_name=self.prefix, last_name=str(b + 1)),
                    self.conn.url, "create a bot user")
                existing[email] = int(user.id)
            ids.append(existing[email])
        return ids

    def answer(self, pending: Mapping[str, str | None]) -> int:
        """Answer every pending task not yet answered by its bots; returns the number of answers made."""
        tasks = {int(t): e for e, t in pending.items()  # bots know the pool's truth only, not routed traffic
                 if t is not None and str(t).isdigit() and e in self.truth}
        if not tasks:
            return 0
        done, overlap = self._answered(tasks)
        made = 0
        for task_id, example_id in sorted(tasks.items()):
            key = example_id if self.prefix == "bot" else f"{self.prefix}:{example_id}"  # "bot": as in 0.1
            rng = keyed_rng(self.seed, key)
            count = min(overlap.get(task_id, 1), len(self.user_ids))
            chosen = rng.choice(len(self.user_ids), size=count, replace=False)
            for bot in (int(b) for b in chosen):  # in a random order: a majority tie goes to the first answer
                user = self.user_ids[bot]
                draw = keyed_rng(self.seed, f"{key}/{bot}")
                skip = draw.random() < self.config.skip_rate
                label = noisy_answer(str(self.truth[example_id]), self.classes, self.config.accuracy_of(bot), draw)
                lead_time = float(draw.uniform(2.0, 30.0))
                if user in done.get(task_id, set()):
                    continue
                result = [] if skip else [{"from_name": CHOICES_NAME, "to_name": TEXT_NAME, "type": "choices",
                                           "value": {"choices": [label]}}]
                call(lambda t=task_id, r=result, u=user, s=skip, lt=lead_time: self.conn.client.annotations.create(
                    id=t, result=r, completed_by=u, was_cancelled=s, lead_time=lt),
                    self.conn.url, "create a bot annotation")
                made += 1
        return made

    def _answered(self, tasks: Mapping[int, str]) -> tuple[dict[int, set[int]], dict[int, int]]:
        """Which users already answered each task (so a resumed run never answers twice), and its overlap."""
        query = dm_filters([("filter:tasks:id", "in", "Number", {"min": min(tasks), "max": max(tasks)})])
        listed = call(lambda: list(self.conn.client.tasks.list(project=self.project_id, query=query, fields="all",
                                                               include="id,annotators,overlap", page_size=5000)),
                      self.conn.url, "list answered tasks")
        return ({int(t.id): {int(u) for u in (t.annotators or [])} for t in listed},
                {int(t.id): int(t.overlap or 1) for t in listed})

