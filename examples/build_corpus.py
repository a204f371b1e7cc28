"""Rebuild the example corpus in `examples/corpus/` from Debian packages, deterministically.

The demo and the tests read the committed `examples/corpus/*.jsonl.gz`; nothing runs this script
for them. It exists so that anyone can check where every byte of the corpus came from.

Sources (see `examples/README.md` for licences):

- `austen`: Jane Austen's six novels, from `r-cran-janeaustenr` (the R package's data, read here
  from R's lazy-load database with a small reader of R's serialization format).
- `kjv`: the King James Bible, from `bible-kjv-text`, decoded by the `bible` program of `bible-kjv`
  (the text is stored in that program's own compressed format).
- `devils-dictionary`: Ambrose Bierce's The Devil's Dictionary, from `dict-devil` (a dictd database).

Exact commands (Debian 12 "bookworm"; `bible` needs libreadline8, present on most Debian systems):

    mkdir -p /tmp/nexus-corpus && cd /tmp/nexus-corpus
    apt-get update
    apt-get download r-cran-janeaustenr=1.0.0-1 bible-kjv-text=4.38 bible-kjv=4.38 dict-devil=1.0-13.1
    for deb in *.deb; do dpkg-deb -x "$deb" root; done
    cd -    # back to the repository root
    python3 examples/build_corpus.py /tmp/nexus-corpus/root

It writes `examples/corpus/<source>.jsonl.gz` (one JSON object per line: `id`, `text`, `source`,
`title`) and prints a summary table. The gzip files carry no timestamp, so a rebuild from the same
packages gives byte-identical files. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import json
import lzma
import math
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "corpus"
MAX_DOC_CHARS = 5000  # a section longer than this is split at paragraph boundaries
TARGET_DOC_CHARS = 4000  # ...into balanced parts of about this size
MIN_GROUP_CHARS = 2500  # dictionary entries are grouped into documents of at least this size
MIN_CHAPTER_CHARS = 400  # a shorter Bible chapter (under ~70 words) joins the next one

PACKAGES = {
    "austen": "r-cran-janeaustenr",
    "kjv": "bible-kjv-text",
    "devils-dictionary": "dict-devil",
}

Doc = tuple[str, list[str]]  # (title, paragraphs)


# ----------------------------------------------------------------------------- text helpers


def reflow(lines: list[str]) -> str:
    """Join hard-wrapped lines into one line, keeping hyphens and `--` dashes attached."""
    out = ""
    for line in (x.strip() for x in lines):
        if not line:
            continue
        if not out or out.endswith("-"):
            out += line
        else:
            out += " " + line
    return re.sub(r" {2,}", " ", out)


def is_verse(lines: list[str]) -> bool:
    """Verse keeps its line breaks; prose (a quoted letter, say) is re-flowed.

    Lines of verse start with a capital letter (after opening quotes); wrapped prose mostly does not.
    """
    starts = [re.sub(r"^[\"'(]+", "", x.strip())[:1] for x in lines if x.strip()]
    return len(starts) >= 2 and sum(c.isupper() for c in starts) >= 0.8 * len(starts)


def indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def block_to_paragraphs(block: list[str]) -> list[str]:
    """Turn one blank-line-separated block of plain text into paragraphs.

    An unindented block is prose in which an indented line starts a new paragraph. An indented
    block is verse (lines kept, indentation dropped) or an indented prose quotation (re-flowed).
    A line indented 16+ columns (a signature, a dateline, an attribution) stays a line of its own.
    """
    if all(indent(x) >= 16 for x in block):
        return ["\n".join(x.strip() for x in block)]
    body = [x for x in block if indent(x) < 16]
    tail = [x.strip() for x in block[len(body) :] if indent(x) >= 16]
    if len(body) + len(tail) != len(block):  # a far-indented line in the middle: keep lines apart
        return ["\n".join(x.strip() for x in block)]
    if indent(body[0]) > 0 and is_verse(body):
        return ["\n".join([x.strip() for x in body] + tail)]
    base = min(indent(x) for x in body)
    paras: list[list[str]] = []
    for i, line in enumerate(body):
        if i == 0 or indent(line) > base:
            paras.append([])
        paras[-1].append(line)
    texts = [reflow(p) for p in paras]
    if tail:
        texts[-1] += "\n" + "\n".join(tail)
    return texts


def blocks(lines: Iterable[str]) -> Iterator[list[str]]:
    """Split lines into runs separated by blank lines; runs of spaces inside a line become one."""
    cur: list[str] = []
    for line in lines:
        if line.strip():
            cur.append(" " * indent(line) + re.sub(r" {2,}", " ", line.strip()))
        elif cur:
            yield cur
            cur = []
    if cur:
        yield cur


def strip_emphasis(text: str) -> str:
    """Drop the `_italics_` markup of the plain-text editions."""
    return re.sub(r"_([^_]+)_", r"\1", text).replace("_", "")


def split_section(title: str, paras: list[str]) -> list[Doc]:
    """Split a long section into balanced parts at paragraph boundaries."""
    total = sum(len(p) + 2 for p in paras)
    if total <= MAX_DOC_CHARS:
        return [(title, paras)]
    parts = math.ceil(total / TARGET_DOC_CHARS)
    target = total / parts
    groups: dict[int, list[str]] = {}
    size = 0
    for p in paras:  # a paragraph goes to the part where its middle falls
        groups.setdefault(min(parts - 1, int((size + len(p) / 2) // target)), []).append(p)
        size += len(p) + 2
    out: list[list[str]] = []
    for group in groups.values():  # a scrap (a letter's signature after a long letter) joins the part before
        if out and sum(len(p) for p in group) < TARGET_DOC_CHARS / 8:
            out[-1] += group
        else:
            out.append(group)
    if len(out) == 1:
        return [(title, paras)]
    return [(f"{title} (part {i} of {len(out)})", ps) for i, ps in enumerate(out, 1)]


# ----------------------------------------------------------------------------- Jane Austen


class RVector(list):
    """An R vector that carried attributes (`names`, ...), kept in `attrs`."""

    attrs: dict


class RUnserializer:
    """Reads the subset of R's XDR serialization format (version 2/3) that data vectors use.

    No installed Python package reads R data, and R itself is a large install for six vectors.
    """

    def __init__(self, data: bytes) -> None:
        if data[:2] != b"X\n":
            raise ValueError("not an R XDR serialization")
        self.data, self.pos, self.refs = data, 2, []
        version = self._int()
        self.pos += 8  # writer and minimal reader R versions
        if version == 3:
            self.pos += 4 + self._int()  # native encoding name

    def _int(self) -> int:
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def read(self) -> object:
        flags = self._int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind == 254:  # NULL
            return None
        if kind == 255:  # reference to an earlier symbol
            return self.refs[(flags >> 8) - 1]
        if kind == 1:  # symbol
            sym = self.read()
            self.refs.append(sym)
            return sym
        if kind == 9:  # string
            n = self._int()
            if n == -1:
                return None
            raw = self.data[self.pos : self.pos + n]
            self.pos += n
            return raw.decode("latin-1" if (flags >> 12) & 4 else "utf-8")
        if kind == 2:  # pairlist (attributes)
            items = {}
            while kind == 2:
                if has_attr:
                    self.read()
                tag = self.read() if has_tag else None
                items[tag] = self.read()
                flags = self._int()
                kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
            if kind != 254:
                raise ValueError(f"unexpected pairlist terminator {kind}")
            return items
        if kind in (16, 19):  # character vector, list
            value: object = [self.read() for _ in range(self._int())]
        elif kind in (10, 13):  # logical, integer
            n = self._int()
            value = list(struct.unpack_from(f">{n}i", self.data, self.pos))
            self.pos += 4 * n
        else:
            raise ValueError(f"unsupported R object type {kind}")
        if has_attr:
            value = RVector(value)
            value.attrs = self.read()
        return value


def read_lazyload_db(base: Path) -> dict[str, object]:
    """Read every object of an R lazy-load database (`base`.rdx index + `base`.rdb blobs)."""
    variables = RUnserializer(gzip.decompress(base.with_suffix(".rdx").read_bytes())).read()[0]
    blob = base.with_suffix(".rdb").read_bytes()
    out = {}
    for name, (offset, length) in zip(variables.attrs["names"], variables, strict=True):
        out[name] = RUnserializer(inflate(blob[offset : offset + length])).read()
    return out


def inflate(chunk: bytes) -> bytes:
    """A lazy-load blob: 4-byte length, then zlib data, or a type byte ("Z" xz, "2" bzip2) and data."""
    if chunk[4:5] == b"Z":
        return lzma.decompress(chunk[5:])
    if chunk[4:5] == b"2":
        return bz2.decompress(chunk[5:])
    return zlib.decompress(chunk[4:])


AUSTEN_TITLES = {
    "sensesensibility": "Sense and Sensibility",
    "prideprejudice": "Pride and Prejudice",
    "mansfieldpark": "Mansfield Park",
    "emma": "Emma",
    "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion",
}
CHAPTER_RE = re.compile(r"^(CHAPTER|Chapter) ([IVXLC]+|\d+)$")
VOLUME_RE = re.compile(r"^VOLUME ([IVX]+)$")
FOOTNOTE_MARK_RE = re.compile(r"(?<=\S)\*(?=\s)")  # "declared,* it must be"
DROP_LINE_RE = re.compile(r"^\s*(\*[ *]*|THE END|FINIS|Finis)\s*$")


def austen_docs(root: Path) -> list[Doc]:
    """Chapters of the six novels (publication order), front matter and editors' notes dropped."""
    data = read_lazyload_db(root / "usr/lib/R/site-library/janeaustenr/data/Rdata")
    docs: list[Doc] = []
    for key, book in AUSTEN_TITLES.items():
        docs += novel_sections(book, data[key])
    return docs


def novel_sections(book: str, lines: list[str | None]) -> list[Doc]:
    sections: list[tuple[str, list[str]]] = []
    volume = ""
    for line in (x or "" for x in lines):
        stripped = line.strip()
        if VOLUME_RE.match(stripped):
            volume = f"Volume {VOLUME_RE.match(stripped).group(1)}, "
        elif m := CHAPTER_RE.match(stripped):
            sections.append((f"{book}, {volume}Chapter {m.group(2)}", []))
        elif stripped.startswith("ADVERTISEMENT BY THE AUTHORESS"):
            sections.append((f"{book}, Advertisement by the Authoress", []))
        elif stripped == "A NOTE ON THE TEXT":  # a modern editor's note, not Austen's
            sections.append(("", []))
        elif sections and not DROP_LINE_RE.match(line):
            sections[-1][1].append(line)
    docs: list[Doc] = []
    for title, body in sections:
        paras = [
            strip_emphasis(FOOTNOTE_MARK_RE.sub("", p))
            for b in blocks(body)
            if not is_printer_note(b)
            for p in block_to_paragraphs(b)
        ]
        if title and paras:
            docs += split_section(title, paras)
    return docs


def is_printer_note(block: list[str]) -> bool:
    """A printed edition's apparatus: a bracketed note ("[End volume one of this edition. ...]") or a
    footnote ("*Vide a letter from Mr. Richardson ...", which the e-text moved to the novel's end)."""
    text = " ".join(x.strip() for x in block)
    return (text.startswith("[") and text.endswith("]")) or bool(re.match(r"\*[A-Za-z]", text))


# ----------------------------------------------------------------------------- King James Bible

KJV_BOOKS = [
    "Genesis",
    "Exodus",
    "Leviticus",
    "Numbers",
    "Deuteronomy",
    "Joshua",
    "Judges",
    "Ruth",
    "1 Samuel",
    "2 Samuel",
    "1 Kings",
    "2 Kings",
    "1 Chronicles",
    "2 Chronicles",
    "Ezra",
    "Nehemiah",
    "Esther",
    "Job",
    "Psalms",
    "Proverbs",
    "Ecclesiastes",
    "Song of Solomon",
    "Isaiah",
    "Jeremiah",
    "Lamentations",
    "Ezekiel",
    "Daniel",
    "Hosea",
    "Joel",
    "Amos",
    "Obadiah",
    "Jonah",
    "Micah",
    "Nahum",
    "Habakkuk",
    "Zephaniah",
    "Haggai",
    "Zechariah",
    "Malachi",
    "Matthew",
    "Mark",
    "Luke",
    "John",
    "Acts",
    "Romans",
    "1 Corinthians",
    "2 Corinthians",
    "Galatians",
    "Ephesians",
    "Philippians",
    "Colossians",
    "1 Thessalonians",
    "2 Thessalonians",
    "1 Timothy",
    "2 Timothy",
    "Titus",
    "Philemon",
    "Hebrews",
    "James",
    "1 Peter",
    "2 Peter",
    "1 John",
    "2 John",
    "3 John",
    "Jude",
    "Revelation",
]
VERSE_RE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.+)$")


def kjv_docs(root: Path) -> list[Doc]:
    """One document per chapter, one paragraph per verse (verse numbers dropped)."""
    text = subprocess.run(
        [str(root / "usr/bin/bible"), "-f", "-p", str(root / "usr/lib"), "Gen1:1-Rev22:21"],
        check=True,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
    ).stdout
    chapters: list[tuple[str, str, list[str]]] = []  # (book, chapter, verses)
    abbrevs: list[str] = []
    for line in text.splitlines():
        m = VERSE_RE.match(line)
        if not m:
            raise ValueError(f"unexpected line from bible: {line[:80]!r}")
        abbrev, chapter, _, verse = m.groups()
        if not abbrevs or abbrevs[-1] != abbrev:
            abbrevs.append(abbrev)
        book = KJV_BOOKS[len(abbrevs) - 1]
        if not chapters or chapters[-1][:2] != (book, chapter):
            chapters.append((book, chapter, []))
        chapters[-1][2].append(re.sub(r" {2,}", " ", verse.strip()))
    if len(abbrevs) != len(KJV_BOOKS):
        raise ValueError(f"expected {len(KJV_BOOKS)} books, got {len(abbrevs)}")
    return group_short_chapters(chapters)


def group_short_chapters(chapters: list[tuple[str, str, list[str]]]) -> list[Doc]:
    """Merge a very short chapter (Psalm 117 has two verses) with the next one of the same book."""
    docs: list[Doc] = []
    pending: list[tuple[str, str, list[str]]] = []
    for i, (book, chapter, verses) in enumerate(chapters):
        pending.append((book, chapter, verses))
        size = sum(len(v) for _, _, vs in pending for v in vs)
        last_of_book = i + 1 == len(chapters) or chapters[i + 1][0] != book
        if size < MIN_CHAPTER_CHARS and not last_of_book:
            continue
        first, last = pending[0][1], pending[-1][1]
        title = f"{book} {first}" if first == last else f"{book} {first}-{last}"
        docs += split_section(title, [v for _, _, vs in pending for v in vs])
        pending = []
    return docs


# ----------------------------------------------------------------------------- The Devil's Dictionary

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dict_number(s: str) -> int:
    """dictd index offsets are base-64 numbers, most significant digit first."""
    n = 0
    for ch in s:
        n = n * 64 + B64.index(ch)
    return n


def devil_docs(root: Path) -> list[Doc]:
    """The preface, then the entries in order, grouped into documents of a few thousand characters."""
    data = gzip.decompress((root / "usr/share/dictd/devil.dict.dz").read_bytes()).decode("utf-8")
    index = [x.split("\t") for x in (root / "usr/share/dictd/devil.index").read_text().splitlines()]
    spans = {w: (dict_number(o), dict_number(n)) for w, o, n in index}
    offset, length = spans["00databaseinfo"]
    preface = data[offset : offset + length].split("PREFACE", 1)[1]
    docs: list[Doc] = [("The Devil's Dictionary, Preface", text_paragraphs(preface))]
    entries = sorted({span for w, span in spans.items() if not w.startswith("00database")})
    group: list[list[str]] = []
    for offset, length in entries:
        group.append(text_paragraphs(data[offset : offset + length]))
        if sum(len(p) for e in group for p in e) >= MIN_GROUP_CHARS:
            docs.append(devil_group(group))
            group = []
    if group:
        docs.append(devil_group(group))
    return docs


def devil_group(entries: list[list[str]]) -> Doc:
    def head(e: list[str]) -> str:
        return re.split(r"[,.]", e[0], maxsplit=1)[0].strip()

    first, last = head(entries[0]), head(entries[-1])
    title = f"The Devil's Dictionary, {first}" + ("" if first == last else f" to {last}")
    return title, [p for e in entries for p in e]


def text_paragraphs(text: str) -> list[str]:
    """Paragraphs of a dictd entry, without its `{HEADWORD}` cross-reference markup."""
    text = re.sub(r"\{([^{}]*)\}", r"\1", text)
    return [strip_emphasis(p) for b in blocks(text.splitlines()) for p in block_to_paragraphs(b)]


# ----------------------------------------------------------------------------- output


def package_version(root: Path, package: str) -> str:
    """The version on the first line of the package's Debian changelog."""
    doc = root / "usr/share/doc" / package
    for name in ("changelog.Debian.gz", "changelog.gz"):
        if (doc / name).exists():
            first = gzip.decompress((doc / name).read_bytes()).decode("utf-8").splitlines()[0]
            return first.split("(", 1)[1].split(")", 1)[0]
    return "unknown"


def write_jsonl_gz(path: Path, source: str, docs: list[Doc]) -> tuple[int, int]:
    """Write documents as gzip'd JSON lines with no timestamp (reproducible); returns (docs, chars)."""
    buf = io.BytesIO()
    chars = 0
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        for n, (title, paras) in enumerate(docs):
            text = "\n\n".join(paras)
            chars += len(text)
            record = {"id": f"{source}-{n}", "text": text, "source": source, "title": title}
            gz.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    path.write_bytes(buf.getvalue())
    return len(docs), chars


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder the .deb files were extracted into (dpkg-deb -x)")
    parser.add_argument("-o", "--out", type=Path, default=OUT_DIR, help="output folder")
    args = parser.parse_args(argv)
    builders = {"austen": austen_docs, "kjv": kjv_docs, "devils-dictionary": devil_docs}
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{'source':<18} {'package':<34} {'docs':>6} {'chars':>10} {'gz bytes':>10}")
    for source, build in builders.items():
        path = args.out / f"{source}.jsonl.gz"
        n, chars = write_jsonl_gz(path, source, build(args.root))
        package = f"{PACKAGES[source]} {package_version(args.root, PACKAGES[source])}"
        print(f"{source:<18} {package:<34} {n:>6} {chars:>10} {path.stat().st_size:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
