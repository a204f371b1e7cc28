"""A corpus with planted problems and known answers, for the data tests and benchmarks.

Documents are built from real paragraphs (e.g. the example corpus), then copies and junk are planted
at known places: exact duplicates (same text, whitespace and case changed), near-duplicates (a few
words changed plus a footer), short junk, repeated-line spam, non-text blobs, mojibake that should be
repaired and kept, and malformed lines (truncated JSON, invalid UTF-8, missing or non-string text).
Every record carries ``meta.planted`` (its category) and ``meta.ref`` (the id of the original a copy
was made from), and :func:`score` measures how well an output resolved them.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

FOOTERS = (
    "Posted by admin. All rights reserved.",
    "Share this article with your friends.",
    "Read more stories like this on our website.",
    "Copyright 2024. Subscribe to our newsletter for updates.",
)
SHORT_JUNK = ("Click here!", "Buy now", "404 Not Found", "Loading...", "Home | About | Contact", "ok", "N/A")
SPAM_LINES = (
    "BUY CHEAP WATCHES ONLINE NOW best prices guaranteed",
    "Click the link below to win a free phone today",
    "Hot singles in your area are waiting for you",
)
JUNK_KINDS = ("short", "spam", "blob")
MALFORMED_KINDS = ("truncated_json", "invalid_utf8", "missing_text", "text_not_string")


@dataclass
class PlantedCorpus:
    """JSON lines (as bytes, some deliberately broken) and the answer key."""

    lines: list[bytes]
    category: dict[str, str] = field(
        default_factory=dict
    )  # id -> original|exact|near|short|spam|blob|mojibake
    ref: dict[str, str] = field(default_factory=dict)  # copy id -> original id
    malformed: int = 0

    def write(self, path: str, compress: bool = False) -> None:
        data = b"".join(line + b"\n" for line in self.lines)
        with open(path, "wb") as fh:
            fh.write(gzip.compress(data, mtime=0) if compress else data)

    def counts(self) -> Counter[str]:
        c = Counter(self.category.values())
        c["malformed"] = self.malformed
        return c


def paragraphs_of(texts: Iterable[str], min_words: int = 20) -> list[str]:
    """Paragraphs long enough to carry a document (split on blank lines)."""
    out = []
    for text in texts:
        for para in text.split("\n\n"):
            para = " ".join(para.split())
            if len(para.split()) >= min_words:
                out.append(para)
    return out


def _record(doc_id: str, text: str, category: str, ref: str | None = None) -> bytes:
    # meta.doc repeats the id so that outputs which drop ids (the guide's job keeps only text and
    # meta) can still be scored.
    meta = {"planted": category, "doc": doc_id, **({"ref": ref} if ref else {})}
    return json.dumps({"id": doc_id, "text": text, "meta": meta}, ensure_ascii=False).encode("utf-8")


def _near_copy(rng: random.Random, text: str, vocab: Sequence[str]) -> str:
    words = text.split(" ")
    for i in rng.sample(range(len(words)), k=min(len(words), rng.randint(2, 4))):
        words[i] = rng.choice(vocab)
    return " ".join(words) + "\n\n" + rng.choice(FOOTERS)


def _exact_copy(rng: random.Random, text: str) -> str:
    """The same text up to case and whitespace, which exact dedup normalizes away."""
    variant = rng.randint(0, 2)
    if variant == 0:
        return text
    if variant == 1:
        return "  " + text.replace(" ", "  ", 3) + "\n"
    return text.upper() if len(text) < 200 else text[:1].lower() + text[1:]


def _junk(rng: random.Random, kind: str) -> str:
    if kind == "short":
        return rng.choice(SHORT_JUNK)
    if kind == "spam":
        line = rng.choice(SPAM_LINES)
        return "\n".join([line] * rng.randint(8, 30))
    blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(600, 3000)))
    encoded = base64.b64encode(blob).decode()
    if rng.random() < 0.5:
        return "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    return "".join(f"{b:02x}" for b in blob)


def _mojibake(text: str) -> str:
    """Text whose non-ASCII characters were decoded with the wrong codec (what ftfy repairs)."""
    return text.encode("utf-8").decode("latin-1", errors="replace")


def _malformed(rng: random.Random, kind: str, n: int) -> bytes:
    if kind == "truncated_json":
        return f'{{"id": "bad-{n}", "text": "this line was cut'.encode()
    if kind == "invalid_utf8":
        return f'{{"id": "bad-{n}", "text": "caf'.encode() + b"\xe9\xff\xfe" + b' au lait"}'
    if kind == "missing_text":
        return json.dumps({"id": f"bad-{n}", "body": "no text field here"}).encode()
    return json.dumps({"id": f"bad-{n}", "text": rng.choice([42, None, ["a"], {"t": 1}])}).encode()


def build(
    paragraphs: Sequence[str],
    originals: int,
    *,
    exact_rate: float = 0.08,
    near_rate: float = 0.08,
    junk_rate: float = 0.06,
    malformed_rate: float = 0.01,
    mojibake_rate: float = 0.01,
    seed: int = 0,
) -> PlantedCorpus:
    """``originals`` documents of 2–5 random paragraphs each, with copies and junk planted among them."""
    if len(paragraphs) < 10:
        raise ValueError("need at least 10 paragraphs to build a planted corpus")
    rng = random.Random(seed)
    vocab = sorted({w for p in paragraphs[:2000] for w in p.split(" ") if w.isalpha()}) or ["word"]
    corpus = PlantedCorpus(lines=[])
    made: list[tuple[str, str]] = []
    for i in range(originals):
        doc_id = f"orig-{i}"
        text = "\n\n".join(rng.sample(paragraphs, k=rng.randint(2, 5)))
        if rng.random() < mojibake_rate and not text.isascii():
            corpus.lines.append(_record(doc_id, _mojibake(text), "mojibake"))
            corpus.category[doc_id] = "mojibake"
        else:
            corpus.lines.append(_record(doc_id, text, "original"))
            corpus.category[doc_id] = "original"
            made.append((doc_id, text))
        # Copies come after their original in input order, so the original is the one to keep.
        if made and rng.random() < exact_rate:
            ref, src = rng.choice(made)
            cid = f"exact-{len(corpus.ref)}"
            corpus.lines.append(_record(cid, _exact_copy(rng, src), "exact", ref))
            corpus.category[cid], corpus.ref[cid] = "exact", ref
        if made and rng.random() < near_rate:
            ref, src = rng.choice(made)
            if len(src.split()) >= 150:
                cid = f"near-{len(corpus.ref)}"
                corpus.lines.append(_record(cid, _near_copy(rng, src, vocab), "near", ref))
                corpus.category[cid], corpus.ref[cid] = "near", ref
        if rng.random() < junk_rate:
            kind = rng.choice(JUNK_KINDS)
            jid = f"junk-{kind}-{i}"
            corpus.lines.append(_record(jid, _junk(rng, kind), kind))
            corpus.category[jid] = kind
        if rng.random() < malformed_rate:
            corpus.lines.append(_malformed(rng, rng.choice(MALFORMED_KINDS), i))
            corpus.malformed += 1
    return corpus


def score(corpus: PlantedCorpus, kept_ids: Iterable[str]) -> dict[str, float]:
    """Fractions: duplicate pairs resolved to one survivor, junk removed, originals kept.

    A duplicate pair is judged where at least one of its two documents survived: when a quality
    filter removed the original and its copy alike, deduplication had nothing left to decide (those
    pairs are counted under ``*_filtered``).
    """
    kept = set(kept_ids)
    result: dict[str, float] = {}
    for kind in ("exact", "near"):
        pairs = [(c, r) for c, r in corpus.ref.items() if corpus.category[c] == kind]
        survivors = [(c in kept) + (r in kept) for c, r in pairs]
        judged = [s for s in survivors if s > 0]
        result[f"{kind}_pairs"] = len(pairs)
        result[f"{kind}_filtered"] = len(pairs) - len(judged)
        result[f"{kind}_resolved"] = sum(1 for s in judged if s == 1) / len(judged) if judged else 1.0
    junk = [i for i, c in corpus.category.items() if c in JUNK_KINDS]
    result["junk"] = len(junk)
    result["junk_removed"] = sum(1 for i in junk if i not in kept) / len(junk) if junk else 1.0
    originals = [i for i, c in corpus.category.items() if c == "original"]
    result["originals"] = len(originals)
    result["originals_kept"] = sum(1 for i in originals if i in kept) / len(originals) if originals else 1.0
    return result


# --- junk of more kinds, technical documents, and personal data: for the quality presets and PII


JUNK_KINDS_ALL = ("short", "spam", "blob", "boilerplate", "lorem", "salad", "keywords", "hexdump")
_NAV_ITEMS = ("Home", "About", "Products", "Pricing", "Blog", "Careers", "Contact", "Support", "Login",
              "Sign up", "Shop", "News", "FAQ", "Partners", "Press")  # fmt: skip
_BOILERPLATE_LINES = (
    "We use cookies to improve your experience on our website. By continuing to browse, you agree to our use of cookies.",
    "Accept all cookies",
    "Privacy Policy | Terms of Service | Cookie Settings",
    "Copyright 2024 Acme Corporation. All rights reserved.",
    "Subscribe to our newsletter and never miss an update.",
    "Follow us on Facebook, Twitter and LinkedIn.",
    "Sign in to your account or create an account to continue.",
    "Forgot your password? Click here to reset it.",
    "Skip to main content",
    "Back to top",
    "Share this page on social media.",
    "Add to cart. Free shipping on orders over $50.",
    "Powered by WordPress.",
    "This site requires JavaScript. Please enable JavaScript in your browser.",
    "Read more about our cookie policy and how we handle your data.",
)  # fmt: skip
_LOREM_TEXT = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut "
    "aliquip ex ea commodo consequat duis aute irure dolor in reprehenderit in voluptate velit esse "
    "cillum dolore eu fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt in culpa "
    "qui officia deserunt mollit anim id est laborum"
)
_LOREM = _LOREM_TEXT.split()
_SEO = ("cheap", "best", "buy", "online", "discount", "sale", "free", "shipping", "deal", "price", "watches",
        "shoes", "replica", "outlet", "offer", "2024", "top", "brand", "store", "order")  # fmt: skip


def junk_document(rng: random.Random, kind: str, vocab: Sequence[str] = ()) -> str:
    """One junk document of ``kind`` (see ``JUNK_KINDS_ALL``); ``vocab`` feeds the word salad."""
    if kind in JUNK_KINDS:
        return _junk(rng, kind)
    if kind == "boilerplate":
        nav = " | ".join(rng.sample(_NAV_ITEMS, k=rng.randint(4, 8)))
        lines = [nav, *rng.sample(_BOILERPLATE_LINES, k=rng.randint(5, 10))]
        rng.shuffle(lines)
        return "\n".join(lines)
    if kind == "lorem":
        words = [rng.choice(_LOREM) for _ in range(rng.randint(80, 300))]
        sentences, i = [], 0
        while i < len(words):
            n = rng.randint(6, 14)
            sentences.append(" ".join(words[i : i + n]).capitalize() + ".")
            i += n
        return " ".join(sentences)
    if kind == "salad":  # words drawn uniformly from a vocabulary: no sentence, no function words
        pool = [w for w in vocab if w.isalpha() and len(w) > 3] or list(_LOREM)
        return " ".join(rng.choice(pool) for _ in range(rng.randint(80, 300)))
    if kind == "keywords":  # search-engine spam: the same few keywords over and over
        picked = rng.sample(_SEO, k=6)
        lines = [
            " ".join(rng.choice(picked) for _ in range(rng.randint(5, 10)))
            for _ in range(rng.randint(10, 30))
        ]
        return "\n".join(lines)
    if kind == "hexdump":
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(400, 1600)))
        rows = [
            f"{i:08x}  " + " ".join(f"{b:02x}" for b in blob[i : i + 16]) for i in range(0, len(blob), 16)
        ]
        return "\n".join(rows)
    raise ValueError(f"unknown junk kind {kind!r}: use one of {', '.join(JUNK_KINDS_ALL)}")


# Technical writing of a kind the filters were not calibrated on: operations runbooks with commands,
# output, config snippets and package listings around short prose. Built from these parts by
# ``runbook``; the services, paths and numbers vary with the seed.
_SERVICES = ("nginx", "postgresql", "redis-server", "docker", "kubelet", "haproxy", "rabbitmq-server",
             "elasticsearch", "grafana-server", "prometheus", "sshd", "cron", "mysql", "memcached")  # fmt: skip
_INTRO = (
    "This runbook describes how to recover {svc} on the application hosts when the health check fails.",
    "Use these steps when {svc} stops answering requests after a deployment or a host reboot.",
    "The following procedure upgrades {svc} with no downtime; run it on one host at a time.",
    "Before you begin, make sure you have sudo access to the host and that the change has been approved.",
    "If the service does not come back after these steps, page the on-call engineer and open an incident.",
)  # fmt: skip
_PROSE = (
    "Check that the service is running and look at the last lines of its log.",
    "The configuration file below is the one we use in production; keep the indentation as it is.",
    "Restart the service and confirm that it is listening on the expected port.",
    "If the package version differs from the one in the table, upgrade it first.",
    "Disk usage above 90 percent is the most common cause of this alert.",
    "Run the commands as root or prefix them with sudo.",
    "Compare the output with the example below; the numbers will differ on your host.",
    "Once the checks pass, remove the host from maintenance mode in the load balancer.",
)  # fmt: skip


def runbook(rng: random.Random) -> str:
    """A code-heavy runbook section: prose, shell sessions with output, a config snippet, listings."""
    svc = rng.choice(_SERVICES)
    port = rng.choice((80, 443, 5432, 6379, 8080, 9090, 3000, 5672, 9200))
    version = f"{rng.randint(1, 16)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}"
    parts = [f"## {svc}: {rng.choice(('recovery', 'upgrade', 'health checks', 'disk full', 'restart'))}",
             rng.choice(_INTRO).format(svc=svc)]  # fmt: skip
    for _ in range(rng.randint(2, 4)):
        parts.append(rng.choice(_PROSE))
        block = rng.choice(("status", "logs", "config", "packages", "disk", "ports"))
        if block == "status":
            parts.append(
                f"$ sudo systemctl status {svc}\n● {svc}.service - {svc.title()} server\n"
                f"     Loaded: loaded (/lib/systemd/system/{svc}.service; enabled)\n"
                f"     Active: active (running) since Mon 2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)} "
                f"0{rng.randint(0, 9)}:{rng.randint(10, 59)}:{rng.randint(10, 59)} UTC\n"
                f"   Main PID: {rng.randint(1000, 99999)} ({svc})"
            )
        elif block == "logs":
            parts.append(
                f"$ journalctl -u {svc} --since '1 hour ago' | tail -n 3\n"
                + "\n".join(
                    f"Jan {rng.randint(10, 28)} 0{rng.randint(0, 9)}:{rng.randint(10, 59)}:{rng.randint(10, 59)} "
                    f"web-{rng.randint(1, 9)} {svc}[{rng.randint(1000, 9999)}]: "
                    + rng.choice(
                        (
                            "started worker process",
                            "connection reset by peer",
                            "reloading configuration",
                            "listening on port " + str(port),
                            "shutting down gracefully",
                        )
                    )
                    for _ in range(3)
                )
            )
        elif block == "config":
            parts.append(
                f"# /etc/{svc}/{svc}.conf\nserver:\n  listen: {port}\n  workers: {rng.choice((2, 4, 8))}\n"
                f"  timeout: {rng.choice((30, 60, 120))}s\nlogging:\n  level: {rng.choice(('info', 'warn'))}\n"
                f"  path: /var/log/{svc}/{svc}.log"
            )
        elif block == "packages":
            rows = [f"$ apt-cache policy {svc}", f"{svc}:", f"  Installed: {version}-1",
                    f"  Candidate: {version}-{rng.randint(2, 5)}", "  Version table:",
                    f" *** {version}-1 500", "        500 http://deb.debian.org/debian bookworm/main amd64 Packages"]  # fmt: skip
            parts.append("\n".join(rows))
        elif block == "disk":
            parts.append(
                "$ df -h /var\nFilesystem      Size  Used Avail Use% Mounted on\n"
                f"/dev/sda{rng.randint(1, 4)}        {rng.randint(20, 500)}G  {rng.randint(10, 400)}G  "
                f"{rng.randint(1, 90)}G  {rng.randint(50, 99)}% /var"
            )
        else:
            parts.append(
                f"$ sudo ss -ltnp | grep {port}\nLISTEN 0      511      0.0.0.0:{port}      0.0.0.0:*    "
                f'users:(("{svc}",pid={rng.randint(1000, 9999)},fd={rng.randint(3, 20)}))'
            )
    return "\n\n".join(parts)


# --- personal data planted in real text


@dataclass
class PlantedPii:
    """Texts with personal data inserted, where each item is, and what must stay untouched."""

    texts: list[str]
    items: list[list[tuple[str, str]]]  # per text: (kind, value) that must be redacted
    decoys: list[list[str]]  # per text: look-alikes that must survive (bad checksums, private IPs)


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    """A card number with the given prefix and length and a valid Luhn check digit."""
    from nexus_llm.data.pii import luhn_ok

    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


def _group(number: str, rng: random.Random) -> str:
    if len(number) == 15:  # American Express: 4-6-5
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    return rng.choice((" ", "-", "")).join(groups)


_FIRST = ("anna", "ben", "chloe", "david", "elena", "farid", "grace", "hiro", "ines", "jamal", "kate", "li")
_LAST = ("smith", "garcia", "nguyen", "mueller", "rossi", "kowalski", "tanaka", "okafor", "dubois", "silva")
_DOMAINS = (
    "acme-corp.com",
    "globex.io",
    "initech.net",
    "umbrella.co.uk",
    "example-bank.de",
    "mail.hooli.com",
)
_AREA = ("212", "415", "650", "617", "312", "206", "303", "512", "713", "305", "404", "718")
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_ALNUM = string.ascii_letters + string.digits


def pii_value(rng: random.Random, kind: str) -> str:
    """One realistic, valid item of personal data or a secret of ``kind`` (or of a sub-kind)."""
    if kind == "email":
        sep = rng.choice((".", "_", ""))
        return f"{rng.choice(_FIRST)}{sep}{rng.choice(_LAST)}@{rng.choice(_DOMAINS)}"
    if kind == "phone":
        import phonenumbers

        while True:
            style = rng.randint(0, 4)
            if style < 3:
                area, exch, line = rng.choice(_AREA), rng.randint(200, 999), rng.randint(1000, 9999)
                text = (f"({area}) {exch}-{line}", f"{area}-{exch}-{line}", f"+1 {area} {exch} {line}")[style]
            elif style == 3:
                text = f"+44 20 7{rng.randint(100, 999)} {rng.randint(1000, 9999)}"
            else:
                text = f"+33 1 {rng.randint(40, 49)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
            if phonenumbers.is_valid_number(phonenumbers.parse(text, "US")):
                return text
    if kind == "ip_address":
        import ipaddress

        while True:
            if rng.random() < 0.8:
                value = ".".join(str(rng.randint(1, 223)) for _ in range(4))
            else:
                value = (
                    "2a0"
                    + f"{rng.randint(0, 9)}:"
                    + ":".join(f"{rng.randint(0, 65535):x}" for _ in range(3))
                    + "::"
                    + f"{rng.randint(1, 65535):x}"
                )
            if ipaddress.ip_address(value).is_global:
                return value
    if kind == "credit_card":
        prefix, length = rng.choice(
            (("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16))
        )
        return _group(luhn_complete(prefix, length, rng), rng)
    if kind == "aws_key":
        return rng.choice(("AKIA", "ASIA")) + "".join(rng.choice(_B32) for _ in range(16))
    if kind == "aws_secret":
        return "".join(rng.choice(_ALNUM + "/+") for _ in range(40))
    if kind == "github_token":
        return rng.choice(("ghp_", "gho_", "ghs_")) + "".join(rng.choice(_ALNUM) for _ in range(36))
    if kind == "slack_token":
        return (f"xoxb-{rng.randint(10**10, 10**11)}-{rng.randint(10**10, 10**11)}-"
                + "".join(rng.choice(_ALNUM) for _ in range(24)))  # fmt: skip
    raise ValueError(kind)


_PII_SENTENCES = {
    "email": ("Please send the signed form to {} before Friday.", "For access, write to {} and copy your manager."),
    "phone": ("Call the support desk on {} if the page does not load.", "You can reach her at {} during office hours."),
    "ip_address": ("The client connected from {} shortly before the error.", "Block traffic from {} at the firewall."),
    "credit_card": ("The order was paid with card {} last week.", "Refund the charge on {} and confirm by email."),
    "aws_key": ("The leaked access key {} was rotated yesterday.",),
    "aws_secret": ("Set aws_secret_access_key = {} in the profile.",),
    "github_token": ("Export GITHUB_TOKEN={} before running the release script.",),
    "slack_token": ("The bot authenticates with token {} in the chat workspace.",),
}  # fmt: skip
_SECRET_KINDS = ("aws_key", "aws_secret", "github_token", "slack_token")
_DECOY_SENTENCES = (
    "The card number {} was rejected because its checksum is wrong.",
    "The database listens on {} inside the private network.",
    "Version {} fixed the memory leak reported on 2024-03-15 at 10:42.",
    "Order {} shipped to ZIP code 94103 on March 3, at a price of $1,299.00.",
    "Port 8080 and PID {} were reported by the monitoring agent.",
)  # fmt: skip


def plant_pii(texts: Sequence[str], seed: int = 0, per_text: tuple[int, int] = (1, 3)) -> PlantedPii:
    """Real texts with personal data and secrets inserted between paragraphs, plus decoys.

    Each text gets ``per_text`` items (kinds in turn, so every kind is well represented) and one or
    two decoys: card numbers with a wrong checksum, private IP addresses, version numbers, order ids,
    process ids, that a redactor must leave alone.
    """
    from nexus_llm.data.pii import luhn_ok

    rng = random.Random(seed)
    kinds = ["email", "phone", "ip_address", "credit_card", *_SECRET_KINDS]
    out = PlantedPii([], [], [])
    turn = 0
    for text in texts:
        paragraphs = text.split("\n\n")
        items, decoys = [], []
        for _ in range(rng.randint(*per_text)):
            kind = kinds[turn % len(kinds)]
            turn += 1
            value = pii_value(rng, kind)
            items.append(("secret" if kind in _SECRET_KINDS else kind, value))
            sentence = rng.choice(_PII_SENTENCES[kind]).format(value)
            paragraphs.insert(rng.randint(0, len(paragraphs)), sentence)
        for _ in range(rng.randint(1, 2)):
            template = rng.choice(_DECOY_SENTENCES)
            if "card" in template:
                number = luhn_complete("4", 16, rng)
                bad = number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)
                assert not luhn_ok(bad)
                value = _group(bad, rng)
            elif "private" in template:
                value = rng.choice((f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                                    f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "127.0.0.1"))  # fmt: skip
            elif "Version" in template:
                value = f"{rng.randint(1, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 40)}"
            else:
                value = str(rng.randint(10_000, 99_999_999))
            decoys.append(value)
            paragraphs.insert(rng.randint(0, len(paragraphs)), template.format(value))
        out.texts.append("\n\n".join(paragraphs))
        out.items.append(items)
        out.decoys.append(decoys)
    return out
