"""The ``data:`` section of ``nexus.yaml``: inputs, cleaning, filters, deduplication, engine."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from nexus_llm.configbase import StrictModel


class CleanConfig(StrictModel):
    """Text cleaning. Paragraph structure (newlines) is always kept."""

    fix_unicode: bool = Field(True, description="repair mojibake and broken Unicode with ftfy")
    normalization: Literal["NFC", "NFKC", "none"] = "NFC"
    collapse_spaces: bool = Field(True, description="collapse runs of spaces/tabs inside a line")
    keep_indentation: bool = Field(
        True,
        description="keep the leading spaces of a line (code, YAML and nested lists need them); "
        "false strips every line",
    )
    max_blank_lines: int = Field(1, ge=0, description="longest run of empty lines kept between paragraphs")


class LengthFilter(StrictModel):
    """The guide's length rule: drop texts shorter or longer than these many characters."""

    enabled: bool = True
    min_chars: int = Field(50, ge=0)
    max_chars: int = Field(100_000, ge=1)


class LineBreakFilter(StrictModel):
    """The guide's line-break rule (newlines per character), computed before any collapsing."""

    enabled: bool = True
    max_ratio: float = Field(0.1, gt=0)


class GopherQualityFilter(StrictModel):
    """Gopher quality rules (Rae et al. 2021, appendix A), published thresholds."""

    enabled: bool = True
    min_words: int = 50
    max_words: int = 100_000
    min_avg_word_length: float = 3
    max_avg_word_length: float = 10
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2


class GopherRepetitionFilter(StrictModel):
    """Gopher repetition rules (Rae et al. 2021, table A1), published thresholds."""

    enabled: bool = True
    max_dup_line_frac: float = 0.30
    max_dup_para_frac: float = 0.30
    max_dup_line_char_frac: float = 0.20
    max_dup_para_char_frac: float = 0.20
    max_top_ngram_char_frac: dict[int, float] = {2: 0.20, 3: 0.18, 4: 0.16}
    max_dup_ngram_char_frac: dict[int, float] = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


class C4Filter(StrictModel):
    """C4 rules (Raffel et al. 2020): line rules edit the text, document rules drop it."""

    enabled: bool = False
    remove_lines: bool = Field(
        True, description="apply the line rules (terminal punctuation, words per line, ...)"
    )
    min_words_per_line: int = 3
    min_sentences: int = 5
    max_word_length: int = 1000
    drop_lorem_ipsum: bool = True
    drop_curly_bracket: bool = True
    drop_javascript_lines: bool = True
    drop_policy_lines: bool = True


class JunkFilter(StrictModel):
    """Junk the per-word Gopher statistics miss once they are relaxed for technical text.

    Filler text, word salad and keyword lists (neither prose nor code), pages made of site
    boilerplate (cookie notices, navigation, share buttons) and documents made of encoded data; each
    rule is cheap and is the same in every preset.
    """

    enabled: bool = True
    drop_lorem_ipsum: bool = Field(
        True, description="drop placeholder text (a third of its words lorem ipsum)"
    )
    min_function_words_ratio: float = Field(
        0.05,
        ge=0,
        le=1,
        description="a document with fewer English function words than this share of its words ...",
    )
    min_symbols_ratio: float = Field(
        0.03,
        ge=0,
        le=1,
        description="... and fewer symbols than this share of its characters is neither prose nor code "
        "(word salad, keyword lists, dumps)",
    )
    max_boilerplate_lines_ratio: float = Field(
        0.4, ge=0, le=1, description="most lines that may be site boilerplate or navigation"
    )
    max_encoded_chars_ratio: float = Field(
        0.3,
        ge=0,
        le=1,
        description="most characters that may sit in base-64 or hex runs of 40+ characters",
    )


Preset = Literal["web", "technical", "code"]

# Per-domain thresholds for the Gopher rules: what each preset changes from the published values
# (``web``). Chosen on the calibration corpora in docs/data.md ("Quality presets"), where each rule's
# removals per corpus kind are tabled; ``technical`` is the default, for mixed company text.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "web": {},
    "technical": {
        "gopher_quality": {
            "min_words": 20,
            "max_symbol_word_ratio": 0.5,
            "max_bullet_lines_ratio": 1.0,
            "max_ellipsis_lines_ratio": 0.5,
            "min_alpha_words_ratio": 0.4,
            "min_stop_words": 0,
        },
        "gopher_repetition": {
            "max_dup_line_frac": 0.45,
            "max_dup_para_frac": 0.45,
            "max_dup_line_char_frac": 0.35,
            "max_dup_para_char_frac": 0.35,
            "max_top_ngram_char_frac": {2: 0.35, 3: 0.33, 4: 0.31},
            "max_dup_ngram_char_frac": {5: 0.45, 6: 0.43, 7: 0.41, 8: 0.39, 9: 0.37, 10: 0.35},
        },
    },
    "code": {
        "line_breaks": {"max_ratio": 0.2},
        "gopher_quality": {
            "min_words": 10,
            "max_avg_word_length": 12,
            "max_symbol_word_ratio": 1.0,
            "max_bullet_lines_ratio": 1.0,
            "max_ellipsis_lines_ratio": 1.0,
            "min_alpha_words_ratio": 0.2,
            "min_stop_words": 0,
        },
        "gopher_repetition": {
            "max_dup_line_frac": 0.6,
            "max_dup_para_frac": 0.6,
            "max_dup_line_char_frac": 0.5,
            "max_dup_para_char_frac": 0.5,
            "max_top_ngram_char_frac": {2: 0.40, 3: 0.38, 4: 0.36},
            "max_dup_ngram_char_frac": {5: 0.65, 6: 0.63, 7: 0.61, 8: 0.59, 9: 0.57, 10: 0.55},
        },
    },
}


class FiltersConfig(StrictModel):
    """Filters run in this order; the first that fails names the rejection reason.

    ``preset`` sets the Gopher thresholds for a kind of text (``web``: the published values, tuned
    on web prose; ``technical``: documentation, tickets and runbooks with commands, listings and
    config snippets, and prose; ``code``: source files); a threshold given explicitly wins over the
    preset's.
    """

    preset: Preset = Field(
        "technical",
        description="web (published Gopher thresholds), technical (default: documentation, runbooks, "
        "prose) or code",
    )
    length: LengthFilter = LengthFilter()
    line_breaks: LineBreakFilter = LineBreakFilter()
    c4: C4Filter = C4Filter()
    gopher_quality: GopherQualityFilter = GopherQualityFilter()
    junk: JunkFilter = JunkFilter()
    gopher_repetition: GopherRepetitionFilter = GopherRepetitionFilter()

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        preset = data.get("preset", "technical")
        if preset not in PRESETS:
            return data  # the field's own validation names the valid presets
        merged = dict(data)
        for section, values in PRESETS[preset].items():
            given = merged.get(section)
            if given is None:
                merged[section] = dict(values)
            elif isinstance(given, dict):
                merged[section] = {**values, **given}
            # a section given as a model instance is taken as it is
        return merged


PiiKind = Literal["email", "phone", "ip_address", "credit_card", "secret"]
PII_KINDS: tuple[str, ...] = ("email", "phone", "ip_address", "credit_card", "secret")


class PiiConfig(StrictModel):
    """Personal data and secrets: redacted to ``<EMAIL>``, ``<PHONE>``, ... or the document rejected."""

    enabled: bool = True
    redact: list[PiiKind] = Field(
        default_factory=lambda: list(PII_KINDS),
        description="kinds replaced by a placeholder: email, phone, ip_address, credit_card, secret",
    )
    reject: list[PiiKind] = Field(
        default_factory=list, description="kinds whose presence rejects the whole document (pii.<kind>)"
    )
    private_ip_addresses: bool = Field(
        False,
        description="also redact private, loopback, link-local and documentation addresses "
        "(10.0.0.1, 127.0.0.1, 192.0.2.1), which identify no one",
    )
    phone_region: str = Field(
        "US", description="region assumed for phone numbers written without +country code (ISO 3166)"
    )
    samples: int = Field(5, ge=0, le=100, description="examples per kind kept in the manifest, masked")

    @model_validator(mode="after")
    def _one_action_per_kind(self) -> PiiConfig:
        both = sorted(set(self.redact) & set(self.reject))
        if both:
            raise ValueError(
                f"{both} are listed under both redact and reject; list each kind under one of them"
            )
        return self

    @field_validator("phone_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        import phonenumbers

        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}: use an ISO 3166 code such as US, GB, DE, FR, IN")
        return value

    @property
    def kinds(self) -> list[str]:
        return [k for k in PII_KINDS if k in self.redact or k in self.reject]


class LanguageConfig(StrictModel):
    """Language identification (py3langid's model). ``data.language: [en]`` is short for ``languages``."""

    languages: list[str] = Field(
        default_factory=list, description="ISO 639 codes to keep, e.g. [en]; empty = no language filter"
    )
    min_score: float = Field(
        0.5, ge=0, le=1, description="least probability of a kept language for a document to be kept"
    )
    sample_chars: int = Field(
        400, ge=50, le=10_000, description="characters of a document's prose that are scored"
    )
    min_letters: int = Field(
        30, ge=1, description="fewer letters of prose than this: undetermined, and the document is kept"
    )

    @field_validator("languages")
    @classmethod
    def _known_codes(cls, value: list[str]) -> list[str]:
        from nexus_llm.data.language import check_codes

        return check_codes(value)

    @property
    def enabled(self) -> bool:
        return bool(self.languages)


class DecontaminateConfig(StrictModel):
    """Training documents that share a word n-gram with evaluation texts are removed or flagged.

    Evaluation texts are the ``sources`` (lm-eval task YAML files, data files, held-out directories)
    and, with ``heldout_split``, the documents ``nexus data tokenize`` will hold out for validation
    (those whose id falls in ``val_fraction``; ``nexus.yaml`` fills it from ``tokenize:``).
    """

    enabled: bool = True
    sources: list[str] = Field(
        default_factory=list,
        description="evaluation texts: lm-eval task YAML files (their data_files are read), .jsonl/.json/"
        ".parquet/.csv/.txt/.md files, or directories of them (curated data, task folders); local or s3://",
    )
    text_fields: list[str] | None = Field(
        None, description="record fields holding evaluation text; unset = every string field"
    )
    heldout_split: bool = Field(
        True, description="also protect the validation documents `nexus data tokenize` will hold out"
    )
    val_fraction: float | None = Field(
        None, ge=0, lt=1, description="the held-out fraction (set from tokenize.val_fraction by nexus.yaml)"
    )
    split_seed: int = Field(0, ge=0, description="the held-out split's seed (from tokenize.split_seed)")
    ngram: int = Field(13, ge=3, le=64, description="words in an overlapping n-gram (GPT-3: 13)")
    min_words: int = Field(
        8,
        ge=1,
        description="an evaluation text shorter than ngram words is matched whole, when it has at least "
        "this many words (shorter ones are too common to mean anything)",
    )
    max_train_docs: int = Field(
        10,
        ge=1,
        description="an n-gram found in more training documents than this is common phrasing or "
        "boilerplate, not a leak, and is ignored (GPT-3's rule)",
    )
    action: Literal["remove", "flag"] = Field(
        "remove", description="remove contaminated documents, or keep them with meta.contaminated"
    )

    @property
    def uses_split(self) -> bool:
        return self.enabled and self.heldout_split and bool(self.val_fraction)

    @property
    def active(self) -> bool:
        return self.enabled and (bool(self.sources) or self.uses_split)


class NearDedupConfig(StrictModel):
    """MinHash + LSH near-duplicate detection on word n-grams.

    Defaults: 120 permutations in 24 bands of 5 rows make a pair with Jaccard 0.8 a candidate with
    probability 1 - (1 - 0.8**5)**24 = 0.9999; a candidate is confirmed when its signatures agree on
    at least ``threshold - 3 standard errors`` of the permutations, so pairs at the threshold are kept
    as duplicates and unrelated documents (Jaccard near 0) never are.
    """

    enabled: bool = True
    ngram: int = Field(5, ge=1, description="word n-gram (shingle) size")
    num_perm: int = Field(120, ge=8, le=1024)
    bands: int = Field(24, ge=1)
    rows: int = Field(5, ge=1)
    threshold: float = Field(
        0.8, gt=0, le=1, description="Jaccard similarity that counts as a near-duplicate"
    )
    seed: int = 1

    @model_validator(mode="after")
    def _bands_fit(self) -> NearDedupConfig:
        if self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"bands * rows ({self.bands} * {self.rows} = {self.bands * self.rows}) must not exceed "
                f"num_perm ({self.num_perm}); raise num_perm or lower bands/rows"
            )
        return self

    @property
    def confirm_threshold(self) -> float:
        """Signature agreement needed to confirm a candidate pair (threshold minus 3 standard errors)."""
        t = self.threshold
        return max(0.0, t - 3 * math.sqrt(t * (1 - t) / self.num_perm))


class DedupConfig(StrictModel):
    exact: bool = Field(True, description="drop exact duplicates of the normalized text")
    near: NearDedupConfig = NearDedupConfig()


class SparkConfig(StrictModel):
    master: str = Field("local[*]", description="Spark master URL; local[*] runs on this machine")
    conf: dict[str, str] = Field(default_factory=dict, description="extra spark.* settings")


class DataConfig(StrictModel):
    """``nexus data prepare``: readers, cleaning, filters and dedup, on the local or Spark engine."""

    inputs: list[str] = Field(default_factory=list, description="files, directories or globs, local or s3://")
    text_field: str = "text"
    id_field: str = "id"
    engine: Literal["local", "spark"] = "local"
    workers: int | None = Field(None, ge=1, description="local worker processes (default: CPU count)")
    shard_size_mb: float = Field(32, gt=0, description="input bytes per task; bounds memory and output files")
    clean: CleanConfig = CleanConfig()
    pii: PiiConfig = PiiConfig()
    language: LanguageConfig = LanguageConfig()
    filters: FiltersConfig = FiltersConfig()
    dedup: DedupConfig = DedupConfig()
    decontaminate: DecontaminateConfig = DecontaminateConfig()
    spark: SparkConfig = SparkConfig()

    @field_validator("language", mode="before")
    @classmethod
    def _language_list(cls, value: Any) -> Any:
        """``language: [en]`` is short for ``language: {languages: [en]}``."""
        if isinstance(value, list | tuple):
            return {"languages": list(value)}
        if isinstance(value, str):
            return {"languages": [value]}
        return value

    def settings_digest_fields(self) -> dict:
        """The settings that change the output (not the engine or worker count). The content of the
        decontamination sources is part of the output's identity too: see
        :func:`nexus_llm.data.plan.settings_identity`."""
        return self.model_dump(
            mode="json",
            include={
                "text_field", "id_field", "shard_size_mb", "clean", "pii", "language", "filters",
                "dedup", "decontaminate",
            },
        )  # fmt: skip
