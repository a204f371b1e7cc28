"""datatrove's equivalent of the full curation, run locally: the peer in benchmarks/data_prepare.py.

Its FineWeb-style blocks on the same documents: language (py3langid's model, one document at a time,
in a LambdaFilter: datatrove's own LanguageFilter needs fastText's lid.176 model, downloaded at run
time, which cannot be done offline), Gopher repetition and quality, C4 quality, PII (emails and IPs)
and its four-stage MinHash deduplication (signatures, buckets, clusters, filter), with
``LocalPipelineExecutor`` on 2 workers. datatrove parallelises over input files, so the input is a
directory of JSON-lines shards. Run by data_prepare.py as

    python -c "import data_datatrove; data_datatrove.main(IN, OUT, WORKERS)"

(an importable module, not ``__main__``: datatrove's worker pool pickles the filter function).
"""

import sys
import time

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import (
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.filters import (
    C4QualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LambdaFilter,
)
from datatrove.pipeline.formatters import PIIFormatter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig

_IDENT = []


def english(doc):
    if not _IDENT:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _IDENT.append(LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True))
    if not isinstance(doc.text, str):  # datatrove reads a non-string text field as it is
        return False
    lang, score = _IDENT[0].classify(doc.text)
    doc.metadata["language"] = lang
    return lang == "en" and score >= 0.65  # LanguageFilter's default threshold


def main(inp: str, out: str, workers: int = 2) -> None:
    mh = MinhashConfig(
        hash_config=HashConfig(precision=64, hash_fc="sha1"), num_buckets=14, hashes_per_bucket=8
    )
    t = time.time()
    LocalPipelineExecutor(
        pipeline=[
            JsonlReader(inp, glob_pattern="*.jsonl"),
            LambdaFilter(english),
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            C4QualityFilter(filter_no_terminal_punct=False),
            PIIFormatter(),
            JsonlWriter(f"{out}/filtered"),
            MinhashDedupSignature(output_folder=f"{out}/sigs", config=mh),
        ],
        tasks=8,
        workers=workers,
        logging_dir=f"{out}/logs/1",
    ).run()
    print("stage1", time.time() - t)
    LocalPipelineExecutor(
        pipeline=[MinhashDedupBuckets(input_folder=f"{out}/sigs", output_folder=f"{out}/buckets", config=mh)],
        tasks=mh.num_buckets,
        workers=workers,
        logging_dir=f"{out}/logs/2",
    ).run()
    LocalPipelineExecutor(
        pipeline=[
            MinhashDedupCluster(input_folder=f"{out}/buckets", output_folder=f"{out}/remove_ids", config=mh)
        ],
        tasks=1,
        logging_dir=f"{out}/logs/3",
    ).run()
    LocalPipelineExecutor(
        pipeline=[
            JsonlReader(f"{out}/filtered"),
            MinhashDedupFilter(input_folder=f"{out}/remove_ids"),
            JsonlWriter(f"{out}/final"),
        ],
        tasks=8,
        workers=workers,
        logging_dir=f"{out}/logs/4",
    ).run()
    print("total", time.time() - t)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2)
