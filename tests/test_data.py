"""Pools in CSV, Parquet and JSONL load the same; every bad input is a DataError naming the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from al_loop.config import DatasetConfig, FeaturesConfig
from al_loop.data import featurize, load_splits
from al_loop.errors import DataError


def _frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"id": [f"ex{i}" for i in range(n)], "a": rng.normal(size=n), "b": rng.normal(size=n),
                         "label": ["yes" if i % 2 else "no" for i in range(n)]})


def _save(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False)
    return path


def _numeric(path: Path, **extra: object) -> DatasetConfig:
    return DatasetConfig(path=path, feature_columns=["a", "b"], **extra)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl", ".csv.gz"])
def test_every_format_loads_the_same_pool(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"pool{suffix}"
    frame = _frame()
    if suffix == ".csv.gz":
        frame.to_csv(path, index=False)
    else:
        _save(frame, path)
    splits = load_splits(_numeric(path), seed=1)
    assert splits.classes == ["no", "yes"]
    assert len(splits.pool) + len(splits.test) == 40
    assert set(splits.pool.ids).isdisjoint(splits.test.ids)
    # stratified: both classes in equal shares in the held-out rows
    assert sorted(pd.Series(splits.test.labels).value_counts().tolist()) == [4, 4]


def test_split_is_seeded(tmp_path: Path) -> None:
    path = _save(_frame(), tmp_path / "p.csv")
    first, again, other = (load_splits(_numeric(path), seed=s).test.ids for s in (1, 1, 2))
    assert list(first) == list(again)
    assert list(first) != list(other)


@pytest.mark.parametrize(("mutate", "config_extra", "expected"), [
    (lambda f: f.drop(columns=["b"]), {}, "missing column(s) ['b']"),
    (lambda f: f.assign(id=["same"] * len(f)), {}, "duplicate ids"),
    (lambda f: f.assign(id=[None, *f.id[1:]]), {}, "empty value"),
    (lambda f: f.assign(id=["  ", *f.id[1:]]), {}, "empty value"),
    (lambda f: f.assign(a=[np.nan, *f.a[1:]]), {}, "NaN or infinite"),
    (lambda f: f.assign(a=["x", *f.a[1:].astype(str)]), {}, "not numeric"),
    (lambda f: f.assign(label=["maybe", *f.label[1:]]), {"classes": ["yes", "no"]}, "outside dataset.classes"),
    (lambda f: f.assign(label="yes"), {}, "need at least two"),
])
def test_bad_pool_is_a_clear_error(tmp_path: Path, mutate, config_extra: dict, expected: str) -> None:
    path = _save(mutate(_frame()), tmp_path / "p.csv")
    with pytest.raises(DataError) as error:
        load_splits(_numeric(path, **config_extra), seed=0)
    assert expected in str(error.value)
    assert str(path) in str(error.value), "the message names the file"


def test_empty_pool_and_unknown_format(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("id,a,b,label\n")
    with pytest.raises(DataError, match="no rows"):
        load_splits(_numeric(empty), seed=0)
    odd = tmp_path / "pool.xlsx"
    odd.write_text("whatever")
    with pytest.raises(DataError, match="unsupported file type"):
        load_splits(_numeric(odd), seed=0)


def test_test_file_must_not_overlap_the_pool(tmp_path: Path) -> None:
    frame = _frame()
    pool = _save(frame, tmp_path / "pool.csv")
    test = _save(frame.iloc[:5], tmp_path / "test.csv")
    with pytest.raises(DataError, match="also in the pool"):
        load_splits(_numeric(pool, test_path=test), seed=0)


def test_unlabeled_pool_with_classes_keeps_every_row_for_querying(tmp_path: Path) -> None:
    path = _save(_frame().drop(columns=["label"]), tmp_path / "p.csv")
    splits = load_splits(_numeric(path, classes=["no", "yes"]), seed=0)
    assert len(splits.pool) == 40 and splits.test is None and splits.pool.labels is None


def test_text_featurizer_never_looks_at_labels(tmp_path: Path) -> None:
    texts = ["red apple", "green apple", "red car", "blue car", "green car", "red pear"]
    test = _save(pd.DataFrame({"id": ["t1", "t2"], "text": ["blue apple", "red car"], "label": ["f", "c"]}),
                 tmp_path / "test.csv")
    matrices = []
    for labels in (["f", "f", "c", "c", "c", "f"], ["c", "f", "f", "c", "f", "c"]):
        pool = _save(pd.DataFrame({"id": list("abcdef"), "text": texts, "label": labels}), tmp_path / "p.csv")
        config = DatasetConfig(path=pool, text_column="text", test_path=test)
        splits = load_splits(config, seed=0)
        _, x_pool, x_test = featurize(splits, config, FeaturesConfig())
        matrices.append((x_pool.toarray(), x_test.toarray()))
    assert matrices[0][0].shape == (6, 6)
    np.testing.assert_array_equal(matrices[0][0], matrices[1][0])
    np.testing.assert_array_equal(matrices[0][1], matrices[1][1])


def test_bundled_digits(tmp_path: Path) -> None:
    splits = load_splits(DatasetConfig(name="digits"), seed=0)
    assert splits.classes == [str(d) for d in range(10)]
    assert len(splits.pool) + len(splits.test) == 1797
    assert splits.pool.ids[0].startswith("digits-")
