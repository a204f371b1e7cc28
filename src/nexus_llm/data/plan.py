"""The plan of a ``nexus data prepare`` run: its splits, settings and identity.

The plan is saved under ``OUT/_work/plan.json``. A rerun with the same inputs (by content) and settings
has the same digest, finds the same plan and reuses every split already done; anything else starts over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from nexus_llm import storage
from nexus_llm.data.config import DataConfig
from nexus_llm.data.readers import SUFFIXES, Split, plan_splits

PLAN_VERSION = 2


@dataclass
class Plan:
    output: str
    inputs: list[dict]
    settings: dict
    splits: list[Split]
    digest: str
    config: DataConfig = field(repr=False)

    @property
    def work(self) -> str:
        return storage.join(self.output, "_work")

    def split_dir(self, index: int) -> str:
        return storage.join(self.work, "splits", f"{index:05d}")

    def final_dir(self, index: int) -> str:
        return storage.join(self.work, "final", f"{index:05d}")

    @property
    def sources_index(self) -> str:
        """The n-grams of the decontamination sources' evaluation texts (built before the map)."""
        return storage.join(self.work, "decontaminate-sources.npz")

    @property
    def heldout_index(self) -> str:
        """The n-grams of the held-out split's documents (built after deduplication)."""
        return storage.join(self.work, "decontaminate-heldout.npz")

    @property
    def has_sources_index(self) -> bool:
        return self.config.decontaminate.enabled and bool(self.config.decontaminate.sources)

    def to_dict(self) -> dict:
        return {
            "version": PLAN_VERSION,
            "output": self.output,
            "inputs": self.inputs,
            "settings": self.settings,
            "digest": self.digest,
            "splits": [s.to_dict() for s in self.splits],
            "config": self.config.model_dump(mode="json"),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(
            output=d["output"],
            inputs=d["inputs"],
            settings=d["settings"],
            splits=[Split.from_dict(s) for s in d["splits"]],
            digest=d["digest"],
            config=DataConfig.model_validate(d["config"]),
        )


def digest_of(inputs: list[dict], settings: dict) -> str:
    blob = json.dumps({"v": PLAN_VERSION, "inputs": inputs, "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


MIN_SPLITS = 64
MIN_SPLIT_BYTES = 1 << 20


def split_bytes(total_bytes: int, shard_size_mb: float) -> int:
    """Input bytes per split: at most ``shard_size_mb``, small enough that a modest input still makes
    about ``MIN_SPLITS`` splits to share among workers, and at least 1 MB. A function of the inputs and
    settings only, never of the worker count, so every run of the same job makes the same splits."""
    cap = int(shard_size_mb * (1 << 20))
    return max(1, min(cap, max(MIN_SPLIT_BYTES, total_bytes // MIN_SPLITS)))


def input_identities(inputs: list[str]) -> list[dict]:
    """The input files, in order, with their sizes and content fingerprints."""
    if not inputs:
        raise FileNotFoundError("no inputs given: pass files, directories or globs (local or s3://)")
    files = storage.expand(inputs, SUFFIXES)
    return [{"uri": f, "size": storage.size(f), "fingerprint": storage.fingerprint(f)} for f in files]


def settings_identity(cfg: DataConfig) -> dict:
    """The settings that change the output, with the decontamination sources' content fingerprints (a
    changed task file changes what is removed); a source that does not exist raises FileNotFoundError."""
    fields = cfg.settings_digest_fields()
    if cfg.decontaminate.enabled and cfg.decontaminate.sources:
        from nexus_llm.data.decontaminate import source_identities

        fields["decontaminate_sources"] = source_identities(cfg.decontaminate.sources)
    return fields


def build_plan(inputs: list[str], output: str, cfg: DataConfig) -> Plan:
    """Expand inputs, fingerprint them by content, and cut them into splits."""
    identities = input_identities(inputs)
    files = [i["uri"] for i in identities]
    settings = settings_identity(cfg)
    splits = plan_splits(files, split_bytes(sum(i["size"] for i in identities), cfg.shard_size_mb))
    return Plan(output, identities, settings, splits, digest_of(identities, settings), cfg)
