"""Terminal output: a command shows nexus's own progress and tables only; ``nexus -v`` shows the
libraries' bars, INFO logs and warnings too; figures read as people write them."""

from __future__ import annotations

import pytest

from nexus_llm.console import QUIET_ENV, human
from support.eval_kit import EXAMPLE_TASK, nexus

# what transformers, datasets and lm-eval draw or log during one `nexus eval` of the tiny model
THIRD_PARTY = ("Running loglikelihood requests", "Tokenizing inputs", "Loading weights", "it/s]")


@pytest.mark.parametrize(
    ("value", "text"),
    [(16260.4, "16,260"), (4.39712, "4.397"), (85.72, "85.72"), (0.01234, "0.01234"), (2109706, "2,109,706"),
     (0.0, "0"), (3e-5, "3.00e-05"), (float("nan"), "nan"), (True, "True"), ("bf16", "bf16")],
)  # fmt: skip
def test_figures_are_formatted_for_people(value, text):
    assert human(value) == text


@pytest.fixture(scope="module")
def eval_outputs(tmp_path_factory, tiny_model_dir):
    """`nexus eval` on the tiny model with an lm-eval task, once quiet and once with -v."""
    root = tmp_path_factory.mktemp("quiet")
    args = ["eval", str(tiny_model_dir), "--no-perplexity", "--task", str(EXAMPLE_TASK), "--limit", "4"]
    # as from a fresh shell: in-process CLI tests may have set these in this process
    fresh = dict.fromkeys(QUIET_ENV)
    quiet = nexus(*args, "-o", str(root / "quiet"), env=fresh)
    verbose = nexus("-v", *args, "-o", str(root / "verbose"), env=fresh)
    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stderr[-2000:] + verbose.stderr[-2000:]
    return quiet, verbose


def test_a_stage_shows_only_nexus_output_unless_verbose(eval_outputs):
    quiet, verbose = eval_outputs
    for marker in THIRD_PARTY[:2]:
        assert marker not in quiet.stderr, quiet.stderr
        assert marker in verbose.stderr  # the test would pass vacuously if eval drew no bars at all
    assert "it/s]" not in quiet.stderr and "INFO" not in quiet.stderr and "Warning" not in quiet.stderr
    assert "Loading weights" in verbose.stderr and "it/s]" in verbose.stderr
    # nexus's own lines stay
    assert "lm-eval tasks" in quiet.stderr
