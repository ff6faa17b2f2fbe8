"""What the commands keep out of their output: the libraries' own deprecation chatter, in one place.

Deprecation and future warnings raised inside third-party packages tell their authors about the next
release, not a user about this run. They are hidden two ways, because the libraries fight filters:

* warning filters, put in front of the list; but importing Feast inserts
  `simplefilter("once", DeprecationWarning)` in front again (`feast/feature_view.py`), so
* a logging filter on `py.warnings`, where Great Expectations routes every warning once it is imported
  (`logging.captureWarnings(True)` at import), drops those records whatever the filter order.

Warnings raised by this repository's own code still show, and so does everything else.

`without_banners()` drops the known start-up lines that TensorFlow's C++ code writes to standard error
(a CPU-only machine's "failed call to cuInit" and the like), which no Python setting reaches.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

LIBRARY_CATEGORIES: tuple[type[Warning], ...] = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
NOTES: tuple[str, ...] = (
    # Feast, on every feature store with an on-demand view: a note about offline scaling, not this run
    r"On demand feature view is an experimental feature",
)
# numpy's NaN warning for a constant column's correlation: Evidently's drift table correlates every
# pair of columns, and a data set without a column's variation (Amazon's single event type) makes a NaN
CONSTANT_COLUMN = r"invalid value encountered in divide"
_FROM_A_LIBRARY = re.compile(r"[/\\](site|dist)-packages[/\\]")
_CONSTANT_COLUMN_IN_NUMPY = re.compile(
    r"numpy[/\\]lib[/\\]_function_base_impl\.py:\d+: RuntimeWarning:\s*" + CONSTANT_COLUMN
)
_CATEGORY = re.compile(r":\d+: (\w+):")  # "path:line: Category: message", or plotly's "...: Category:\n\n"


class LibraryWarnings(logging.Filter):
    """Drops captured warnings (`py.warnings` records) that a library raised about itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not _FROM_A_LIBRARY.search(text.split("\n", 1)[0]):
            return True
        found = _CATEGORY.search(text)
        category = found.group(1) if found else ""
        deprecation = "Deprecat" in category or category == "FutureWarning"
        noise = _CONSTANT_COLUMN_IN_NUMPY.search(text) is not None
        return not (deprecation or noise or any(re.search(note, text) for note in NOTES))


def quiet_library_warnings() -> None:
    """Hide library deprecation warnings and known notes (see the module docstring); call at start-up."""
    for category in LIBRARY_CATEGORIES:
        warnings.filterwarnings("ignore", category=category)
    for note in NOTES:
        warnings.filterwarnings("ignore", message=note)
    # numpy's corrcoef on a constant column (see CONSTANT_COLUMN); a library that resets the filters
    # still meets LibraryWarnings, where Great Expectations routes the warning
    warnings.filterwarnings(
        "ignore",
        message=CONSTANT_COLUMN,
        category=RuntimeWarning,
        module=r"numpy\.lib\._function_base_impl",
    )
    captured = logging.getLogger("py.warnings")
    if not any(isinstance(f, LibraryWarnings) for f in captured.filters):
        captured.addFilter(LibraryWarnings())


BANNERS: tuple[bytes, ...] = (
    # TensorFlow's C++ start-up lines, written to file descriptor 2 before any Python logging exists:
    # TF_CPP_MIN_LOG_LEVEL does not reach them, and on a machine without a GPU they are expected
    rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    rb"^[IWE]\d{4} [\d:.]+ +\d+ \w+\.cc:\d+\] oneDNN custom operations are on",
    rb"^[IWE]\d{4} [\d:.]+ +\d+ \w+\.cc:\d+\] Could not find cuda drivers on your machine",
    rb"^[IWE]\d{4} [\d:.]+ +\d+ \w+\.cc:\d+\] failed call to cuInit",
    rb"^[IWE]\d{4} [\d:.]+ +\d+ \w+\.cc:\d+\] oneDNN supports DT_STRING only on platforms with AVX-512",
)


@contextmanager
def without_banners(patterns: tuple[bytes, ...] = BANNERS) -> Iterator[None]:
    """While the block runs, drop the native libraries' known start-up banners from standard error.

    File descriptor 2 goes through a pipe; a thread forwards every line that matches none of
    `patterns`, so Python tracebacks, logging and every other line still reach the terminal.
    """
    compiled = [re.compile(p) for p in patterns]
    sys.stderr.flush()
    original = os.dup(2)
    forward_to = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as lines, os.fdopen(forward_to, "wb", buffering=0) as out:
            for line in lines:
                if not any(p.search(line) for p in compiled):
                    out.write(line)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # fd 2 writes straight to the terminal again; the pipe ends at its last writer
        os.close(original)
        thread.join(timeout=5)  # a child process still holding the pipe keeps the thread forwarding
