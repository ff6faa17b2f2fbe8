"""Shared fixtures: tiny settings in a temporary home, environment switches for the libraries."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
# flows started without PREFECT_API_URL start a temporary server: 20 s is short on a busy 2-core box
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

import feast  # noqa: E402, F401  (its import puts warning filters in front: before pytest applies ours)
import pytest  # noqa: E402

from recflow.settings import Settings, load_settings  # noqa: E402


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--screenshots",
        default=None,
        help="tests/browser: folder to save the UI screenshots in (e.g. docs/screenshots); a temporary one by default",
    )


def pytest_unconfigure(config) -> None:
    """Free what the in-process services froze before the interpreter tears its modules down.

    `RecflowService.reload` calls `gc.freeze()` (shorter GC pauses while serving), so objects in
    reference cycles, DuckDB's among them, outlive the tests; at exit DuckDB 2.0's nanobind bindings
    would report each as "leaked", dozens of lines after the test summary.
    """
    import gc

    gc.unfreeze()
    gc.collect()


@pytest.fixture(scope="session", autouse=True)
def _stop_prefect_temporary_servers():
    """Stop Prefect's temporary API servers while the session's output is still open.

    Prefect stops them in an `atexit` hook and logs "Stopping temporary server" to the console
    handler it made during the run, whose stream pytest has closed by then: a "--- Logging error ---"
    traceback after every run.
    """
    yield
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()


@pytest.fixture
def tiny_settings(tmp_path) -> Settings:
    """Settings of the `tiny` profile with every artefact under a fresh temporary folder."""
    return load_settings("tiny", home=tmp_path / "home")


@pytest.fixture
def tiny_batches(tiny_settings):
    """Tiny synthetic raw batches landed on disk, and copied as-is into the validated store.

    Synthetic data is valid by construction, so stages downstream of validation can be tested
    without running Great Expectations first.
    """
    import shutil

    from recflow.data.batches import list_batches
    from recflow.data.sources import land_batches

    batches = land_batches(tiny_settings)
    for b in batches:
        shutil.copytree(b.path, tiny_settings.validated_dir / b.path.name)
    assert len(list_batches(tiny_settings.validated_dir)) == tiny_settings.data.n_days
    return batches


@pytest.fixture
def completejourney_folder(tmp_path):
    """A small Complete Journey folder (see `completejourney_data.write_completejourney_folder`)."""
    from completejourney_data import write_completejourney_folder

    return write_completejourney_folder(tmp_path / "completejourney")
