"""What the commands keep out of their output, and what they must still show."""

from __future__ import annotations

import logging
import os
import warnings

import pytest

from recflow.quiet import LibraryWarnings, without_banners


def _captured(message: str, category: type[Warning], filename: str) -> logging.LogRecord:
    """A warning as `logging.captureWarnings` hands it to the `py.warnings` logger."""
    text = warnings.formatwarning(message, category, filename, 12, "x = 1")
    return logging.LogRecord("py.warnings", logging.WARNING, filename, 12, "%s", (text,), None)


def test_library_deprecations_and_known_notes_are_dropped_ours_are_kept():
    drop = LibraryWarnings().filter
    lib = "/x/.venv/lib/python3.11/site-packages/ibis/backends/duckdb/__init__.py"
    assert not drop(_captured("fetch_arrow_table() is deprecated", DeprecationWarning, lib))
    assert not drop(_captured("soon", FutureWarning, lib))

    class PydanticDeprecatedSince211(DeprecationWarning):
        pass

    assert not drop(_captured("old", PydanticDeprecatedSince211, lib))
    note = "On demand feature view is an experimental feature. This API is stable"
    assert not drop(_captured(note, RuntimeWarning, lib.replace("ibis/backends/duckdb", "feast")))
    # a library's other warnings, and every warning of this repository's code, still show
    assert drop(_captured("NaN in column", RuntimeWarning, lib))
    assert drop(_captured("old API of ours", DeprecationWarning, "/work/recflow/serving/service.py"))


def test_the_filter_reads_plotlys_warning_format_too(monkeypatch):
    """plotly (imported by Evidently) replaces `warnings.formatwarning` with a format of its own."""
    from plotly.tools import warning_on_one_line

    monkeypatch.setattr(warnings, "formatwarning", warning_on_one_line)
    lib = "/x/site-packages/pathspec/pathspec.py"
    assert not LibraryWarnings().filter(_captured("gitwildmatch is deprecated", DeprecationWarning, lib))


def test_known_banners_are_dropped_from_stderr_every_other_line_gets_through(capfd):
    with without_banners():
        os.write(
            2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        )
        os.write(
            2,
            b"E0000 00:00:1795984973.681391    9607 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n",
        )
        os.write(2, b"E0000 00:00:1795984973.681391    9607 other.cc:1] a real TensorFlow error\n")
        os.write(2, b"Traceback (most recent call last):\n")
    os.write(2, b"after the block\n")
    err = capfd.readouterr().err
    assert err.splitlines() == [
        "E0000 00:00:1795984973.681391    9607 other.cc:1] a real TensorFlow error",
        "Traceback (most recent call last):",
        "after the block",
    ]


def test_a_constant_column_correlation_is_not_printed():
    """Evidently's drift table correlates every pair of columns; a constant one gives numpy's NaN warning."""
    import numpy as np

    from recflow.quiet import quiet_library_warnings

    constant_and_varying = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    with warnings.catch_warnings(record=True) as before:
        warnings.simplefilter("always")
        np.corrcoef(constant_and_varying)
    assert any("invalid value" in str(w.message) for w in before)  # numpy does warn
    with warnings.catch_warnings(record=True) as after:
        warnings.simplefilter("always")
        quiet_library_warnings()
        np.corrcoef(constant_and_varying)
    assert not any("invalid value" in str(w.message) for w in after)
    # the same warning as Great Expectations hands it to logging (when a library reset the filters)
    numpy_file = "/x/.venv/lib/python3.11/site-packages/numpy/lib/_function_base_impl.py"
    record = _captured("invalid value encountered in divide", RuntimeWarning, numpy_file)
    assert not LibraryWarnings().filter(record)
    ours = _captured("invalid value encountered in divide", RuntimeWarning, "/work/main/models/ranker.py")
    assert LibraryWarnings().filter(ours)  # ours still shows
    from plotly.tools import warning_on_one_line  # Evidently imports plotly, which reformats warnings

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(warnings, "formatwarning", warning_on_one_line)
        assert not LibraryWarnings().filter(
            _captured("invalid value encountered in divide", RuntimeWarning, numpy_file)
        )
