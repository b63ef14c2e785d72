"""The draws behind simulated answers, shared by the in-process crowd and the Label Studio bots: each depends
only on (seed, key), never on call order, so a resumed run gets the same answers as an uninterrupted one."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def keyed_rng(seed: int, key: str) -> np.random.Generator:
    """A generator determined by (seed, key)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def wrong_class(truth: str, classes: Sequence[str], rng: np.random.Generator) -> str:
    """A uniformly random class other than the truth."""
    wrong = [c for c in classes if c != truth]
    return str(wrong[int(rng.integers(len(wrong)))])


def noisy_answer(truth: str, classes: Sequence[str], accuracy: float, rng: np.random.Generator) -> str:
    """The truth with probability `accuracy`, else a uniformly random wrong class."""
    return truth if rng.random() < accuracy else wrong_class(truth, classes, rng)
