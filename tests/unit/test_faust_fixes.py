"""The corrections to faust as a whole: one module each, each with its faust code, its
test and a way out, applied only to the versions they were written for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stepstream.streams import faust_fixes

ROOT = Path(__file__).resolve().parents[2]


def test_another_faust_version_is_refused_with_what_to_do() -> None:
    with pytest.raises(
        faust_fixes.UnsupportedFaust, match=r"faust-streaming 0\.16\.0 is installed"
    ):
        faust_fixes.check_versions({"faust-streaming": "0.16.0", "aiokafka": "0.14.0"})
    with pytest.raises(
        faust_fixes.UnsupportedFaust, match=r"aiokafka 0\.15\.0 .* aiokafka 0\.14\.x"
    ):
        faust_fixes.check_versions({"faust-streaming": "0.15.3", "aiokafka": "0.15.0"})


def test_the_installed_versions_are_the_ones_written_for() -> None:
    faust_fixes.check_versions()


@pytest.mark.parametrize("correction", faust_fixes.CORRECTIONS, ids=lambda m: m.__name__)
def test_each_correction_names_its_faust_code_its_test_and_its_way_out(correction: object) -> None:
    doc = correction.__doc__ or ""
    number = faust_fixes.CORRECTIONS.index(correction) + 1  # type: ignore[arg-type]
    assert doc.startswith(f"Correction {number}: ")
    assert re.search(r"https://github\.com/faust-streaming/faust/blob/v0\.15\.3/\S+\.py", doc)
    assert "Upstream: " in doc and "Way out: " in doc
    tests = re.search(r"Test: (\S+?)\.?\n", doc)
    assert tests is not None and (ROOT / tests.group(1)).exists(), tests
