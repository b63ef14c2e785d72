"""Read a pool (CSV, Parquet, JSONL or a bundled dataset), validate it, split it, featurize it."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn import datasets as sk_datasets
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from al_loop.config import DatasetConfig, FeaturesConfig
from al_loop.errors import DataError

_READERS = {
    ".csv": pd.read_csv,
    ".parquet": pd.read_parquet,
    ".jsonl": lambda path: pd.read_json(path, lines=True),
}


@dataclass(frozen=True)
class Table:
    """Validated rows: string ids, the input columns, and labels (None where unknown)."""

    ids: np.ndarray
    inputs: pd.DataFrame
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Splits:
    """The queryable pool, the held-out test rows (never queried) and the class names."""

    pool: Table
    test: Table | None
    classes: list[str]


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zst", ".xz", ".zip"):
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def read_frame(path: Path) -> pd.DataFrame:
    """Read a CSV, Parquet or JSONL file (optionally compressed) into a DataFrame."""
    reader = _READERS.get(_suffix(path))
    if reader is None:
        raise DataError(f"{path}: unsupported file type; use .csv, .parquet or .jsonl (optionally .gz)")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); write the pool into it again, with at least one "
                        "example (a CSV also needs its header row)")
    try:
        frame = reader(path)
    except Exception as error:  # the readers raise many types; all mean "could not parse this file"
        raise DataError(_read_problem(path, error)) from None
    if frame.empty:
        raise DataError(f"{path}: the file has no rows; a pool needs at least one example")
    return frame


_COMPRESSED = (EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError, zipfile.BadZipFile)


def _read_problem(path: Path, error: Exception) -> str:
    """What is wrong with a file a reader refused, where (a line number where it can be found), and the fix."""
    kind = _suffix(path)
    if isinstance(error, _COMPRESSED) or "compressed" in str(error).lower() or (
            isinstance(error, OSError) and path.suffix.lower() in (".gz", ".bz2", ".xz")):
        return (f"{path}: the compressed file is truncated or damaged ({error}); copy or download it again "
                "(`gzip -t` checks a .gz file)")
    if isinstance(error, UnicodeDecodeError):
        line = _first_line(path, _not_utf8)
        where = f"line {line}" if line else f"byte {error.start}"
        byte = error.object[error.start:error.start + 1]
        return (f"{path}: {where} is not UTF-8 text ({error.reason}, byte {byte!r}); "
                "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")
    if isinstance(error, pd.errors.EmptyDataError):
        return f"{path}: the file holds no columns (it is empty or blank); write a header row and the examples"
    if kind == ".parquet":
        return (f"{path}: not a readable Parquet file ({error}); it may be truncated or another format: write it "
                "again (e.g. DataFrame.to_parquet) or give it the suffix of its format")
    if kind == ".jsonl":
        line = _first_line(path, _not_a_json_object)
        if line:
            return (f"{path}: line {line} is not a JSON object ({_not_a_json_object(_line_text(path, line))}); "
                    "each line must hold one object such as {\"id\": \"a1\", \"text\": \"...\"}: fix that line")
    if isinstance(error, pd.errors.ParserError):
        return (f"{path}: {error}; a field that contains the separator or a line break must be quoted "
                "(\"...\"): fix that line")
    return f"{path}: could not read the file ({type(error).__name__}: {error}); check that it is a valid {kind} file"


def _open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed; a ValueError for a compression whose lines cannot be read here."""
    suffix = path.suffix.lower()
    if suffix in (".zip", ".zst"):
        raise ValueError(f"no line numbers inside {suffix} files")
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix)
    return opener(path, "rb") if opener else path.open("rb")


def _lines(path: Path) -> Iterator[bytes]:
    with _open_binary(path) as file:
        yield from file


def _first_line(path: Path, problem: Callable[[bytes], object]) -> int | None:
    """The number (1 = the first line) of the first line of the file with a problem, if it can be found."""
    try:
        for number, line in enumerate(_lines(path), start=1):
            if problem(line):
                return number
    except Exception:  # the file is damaged in another way: no line number
        return None
    return None


def _line_text(path: Path, number: int) -> bytes:
    for current, line in enumerate(_lines(path), start=1):
        if current == number:
            return line
    return b""


def _not_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _not_a_json_object(line: bytes) -> str:
    """Why a JSONL line is not a JSON object ('' if it is one, or blank)."""
    if not line.strip():
        return ""
    try:
        value = json.loads(line)
    except ValueError as error:
        return getattr(error, "msg", str(error)) + (f" at column {error.colno}" if hasattr(error, "colno") else "")
    return "" if isinstance(value, dict) else f"a JSON {type(value).__name__}, not an object"


def _rows(mask: np.ndarray) -> str:
    """The first few rows where `mask` holds, numbered from 1 (the first example of the file)."""
    rows = (np.flatnonzero(mask)[:5] + 1).tolist()
    return ", ".join(map(str, rows)) + (", ..." if int(mask.sum()) > len(rows) else "")


def _bundled(name: str) -> tuple[pd.DataFrame, list[str]]:
    loader = {"digits": sk_datasets.load_digits, "breast_cancer": sk_datasets.load_breast_cancer,
              "wine": sk_datasets.load_wine}[name]
    bunch = loader()
    columns = [f"f{i}" for i in range(bunch.data.shape[1])]
    frame = pd.DataFrame(bunch.data, columns=columns)
    frame.insert(0, "id", [f"{name}-{i:05d}" for i in range(len(frame))])
    frame["label"] = [str(bunch.target_names[t]) for t in bunch.target]
    return frame, columns


def _check_ids(frame: pd.DataFrame, column: str, where: str) -> np.ndarray:
    raw = frame[column]
    empty = raw.isna() | (raw.astype(str).str.strip() == "")
    if empty.any():
        raise DataError(f"{where}: id column {column!r} has {int(empty.sum())} empty value(s) (example row(s) "
                        f"{_rows(empty.to_numpy())}; 1 = the first example); every example needs a stable, non-empty "
                        "id")
    ids = raw.astype(str).str.strip().to_numpy(dtype=object)
    duplicated = pd.Series(ids).duplicated(keep=False)
    if duplicated.any():
        examples = sorted(set(ids[duplicated.to_numpy()]))[:5]
        raise DataError(f"{where}: id column {column!r} has duplicate ids, e.g. {examples}; ids must be unique")
    return ids


def _check_inputs(frame: pd.DataFrame, config: DatasetConfig, where: str) -> pd.DataFrame:
    if config.text_column is not None:
        text = frame[config.text_column]
        if text.isna().any():
            raise DataError(f"{where}: text column {config.text_column!r} has {int(text.isna().sum())} missing "
                            f"value(s) (example row(s) {_rows(text.isna().to_numpy())}; 1 = the first example); fill "
                            "or drop them")
        return pd.DataFrame({config.text_column: text.astype(str).to_numpy()})
    columns = config.feature_columns or []
    inputs = frame[columns]
    not_numeric = [c for c in columns if not pd.api.types.is_numeric_dtype(inputs[c])
                   or pd.api.types.is_bool_dtype(inputs[c])]
    if not_numeric:
        raise DataError(f"{where}: feature column(s) {not_numeric} are not numeric; convert them or use "
                        "dataset.text_column for text")
    values = inputs.to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        counts = {columns[j]: int(bad[:, j].sum()) for j in np.flatnonzero(bad.any(axis=0))}
        raise DataError(f"{where}: feature column(s) have NaN or infinite values {counts}; impute or drop them")
    return inputs.astype(float).reset_index(drop=True)


def _check_labels(frame: pd.DataFrame, column: str | None, classes: list[str] | None,
                  where: str) -> np.ndarray | None:
    if column is None or column not in frame.columns:
        return None
    raw = frame[column]
    labels = np.array([None if pd.isna(v) else _label_text(v) for v in raw], dtype=object)
    if classes is not None:
        known = set(classes)
        unknown = sorted({v for v in labels if v is not None and v not in known})
        if unknown:
            raise DataError(f"{where}: label column {column!r} has values outside dataset.classes: {unknown[:10]}; "
                            f"add them to dataset.classes or fix the data (classes: {classes})")
    return labels


def _label_text(value: object) -> str:
    """Labels are compared as text; 1.0 read by pandas from an integer column becomes '1'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _table(frame: pd.DataFrame, config: DatasetConfig, classes: list[str] | None, where: str) -> Table:
    needed = [config.id_column, *([config.text_column] if config.text_column else config.feature_columns or [])]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; the file has {list(frame.columns)[:20]}. "
                        "Fix dataset.id_column / text_column / feature_columns")
    frame = frame.reset_index(drop=True)
    return Table(ids=_check_ids(frame, config.id_column, where), inputs=_check_inputs(frame, config, where),
                 labels=_check_labels(frame, config.label_column, classes, where))


def _subset(table: Table, rows: np.ndarray) -> Table:
    return Table(ids=table.ids[rows], inputs=table.inputs.iloc[rows].reset_index(drop=True),
                 labels=None if table.labels is None else table.labels[rows])


def load_splits(config: DatasetConfig, seed: int) -> Splits:
    """Load and validate the pool, and the held-out test rows (a test file, or a seeded stratified split)."""
    if config.name is not None:
        frame, columns = _bundled(config.name)
        config = config.model_copy(update={"id_column": "id", "feature_columns": columns, "text_column": None,
                                           "label_column": "label"})
        where = f"bundled dataset {config.name!r}"
    else:
        assert config.path is not None
        frame = read_frame(config.path)
        where = str(config.path)
    table = _table(frame, config, config.classes, where)
    classes = config.classes or _infer_classes(table, where)
    test = None
    if config.test_path is not None:
        test = _table(read_frame(config.test_path), config, classes, str(config.test_path))
        overlap = set(test.ids) & set(table.ids)
        if overlap:
            raise DataError(f"{config.test_path}: {len(overlap)} test id(s) are also in the pool, e.g. "
                            f"{sorted(overlap)[:3]}; a held-out set must not overlap the pool")
        pool = table
    elif table.labels is not None and all(v is not None for v in table.labels):
        pool, test = _split(table, config.test_size, seed, where)
    else:
        pool = table
    if test is not None and (test.labels is None or any(v is None for v in test.labels)):
        raise DataError(f"{where}: the test rows need a label in column {config.label_column!r} for evaluation")
    if len(pool) == 0:
        raise DataError(f"{where}: the pool is empty after holding out the test rows")
    return Splits(pool=pool, test=test, classes=classes)


def _infer_classes(table: Table, where: str) -> list[str]:
    if table.labels is None:
        raise DataError(f"{where}: no label column and no dataset.classes; list the class names in "
                        "dataset.classes")
    classes = sorted({v for v in table.labels if v is not None})
    if len(classes) < 2:
        raise DataError(f"{where}: found {len(classes)} class(es) in the label column; need at least two")
    return classes


def _split(table: Table, test_size: float, seed: int, where: str) -> tuple[Table, Table]:
    rows = np.arange(len(table))
    labels = table.labels
    counts = pd.Series(labels).value_counts()
    stratify = labels if counts.min() >= 2 else None
    try:
        pool_rows, test_rows = train_test_split(rows, test_size=test_size, random_state=seed, stratify=stratify)
    except ValueError as error:
        raise DataError(f"{where}: cannot hold out a test split of {test_size:.0%}: {error}; "
                        "change dataset.test_size or give dataset.test_path") from None
    return _subset(table, np.sort(pool_rows)), _subset(table, np.sort(test_rows))


def build_featurizer(dataset: DatasetConfig, features: FeaturesConfig) -> ColumnTransformer:
    """An unfitted transformer from the input columns to the model's features."""
    if dataset.text_column is not None:
        vectorizer = TfidfVectorizer(max_features=features.max_features, min_df=features.min_df,
                                     ngram_range=(1, features.ngram_max), sublinear_tf=features.sublinear_tf,
                                     stop_words=features.stop_words, dtype=np.float32)
        return ColumnTransformer([("text", vectorizer, dataset.text_column)], sparse_threshold=1.0)
    return ColumnTransformer([("numeric", StandardScaler(), list(dataset.feature_columns or []))])


def featurize(splits: Splits, dataset: DatasetConfig, features: FeaturesConfig
              ) -> tuple[ColumnTransformer, sparse.spmatrix | np.ndarray, sparse.spmatrix | np.ndarray | None]:
    """Fit the featurizer on the pool inputs only (never on labels), and transform pool and test."""
    if dataset.name is not None:
        dataset = dataset.model_copy(update={"feature_columns": list(splits.pool.inputs.columns),
                                             "text_column": None})
    featurizer = build_featurizer(dataset, features)
    x_pool = featurizer.fit_transform(splits.pool.inputs)
    x_test = None if splits.test is None else featurizer.transform(splits.test.inputs)
    return featurizer, x_pool, x_test
