"""The ``data:`` section of ``nexus.yaml``: inputs, cleaning, filters, deduplication, engine."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from nexus_llm.configbase import StrictModel


class CleanConfig(StrictModel):
    """Text cleaning. Paragraph structure (newlines) is always kept."""

    fix_unicode: bool = Field(True, description="repair mojibake and broken Unicode with ftfy")
    normalization: Literal["NFC", "NFKC", "none"] = "NFC"
    collapse_spaces: bool = Field(True, description="collapse runs of spaces/tabs inside a line")
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


class FiltersConfig(StrictModel):
    """Filters run in this order; the first that fails names the rejection reason."""

    length: LengthFilter = LengthFilter()
    line_breaks: LineBreakFilter = LineBreakFilter()
    c4: C4Filter = C4Filter()
    gopher_quality: GopherQualityFilter = GopherQualityFilter()
    gopher_repetition: GopherRepetitionFilter = GopherRepetitionFilter()


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
    filters: FiltersConfig = FiltersConfig()
    dedup: DedupConfig = DedupConfig()
    spark: SparkConfig = SparkConfig()

    def settings_digest_fields(self) -> dict:
        """The settings that change the output (not the engine or worker count)."""
        return self.model_dump(
            include={"text_field", "id_field", "shard_size_mb", "clean", "filters", "dedup"}
        )
