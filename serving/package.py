"""Packaging: model bundles into the BentoML model store, the champion pointer, and the bento build."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recflow.provenance import code_version
from recflow.settings import Settings

MODEL_NAME = "recflow-recommender"
BUNDLE_DIR = "bundle"
VALIDATION_DIR = "validation"  # models.train.VALIDATION_DIR
REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICE = "serving.service:RecflowService"
BENTO_INCLUDE = ["serving/*.py", "models/*.py", "features/*.py", "recflow/*.py", "recflow/data/*.py"]
BENTO_PACKAGES = [
    "bentoml",
    "faiss-cpu",
    "feast[redis]",
    "pandas",
    "psycopg[binary]",  # the experiment store on PostgreSQL (recflow/experiments.py)
    "pyarrow",
    "pydantic-settings",
    "sqlalchemy",
    "tensorflow",
    "tensorflow-recommenders",
    "tf-keras",
]


@contextmanager
def bentoml_stores(settings: Settings) -> Iterator[None]:
    """Point BentoML's model and bento stores at `settings.bentoml_home` for the duration of the block.

    BentoML reads its home once per process (`BENTOML_HOME`); the CLI sets it before BentoML is
    imported. This makes every function here honour the settings even when the process started
    with another home (tests with a temporary home per test).
    """
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    home = settings.bentoml_home.resolve()
    for sub in ("models", "bentos", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    c = BentoMLContainer
    patches = {
        c.bentoml_home: str(home),
        c.model_store_dir: str(home / "models"),
        c.bento_store_dir: str(home / "bentos"),
        c.tmp_bento_store_dir: str(home / "tmp"),
        c.model_store: ModelStore(str(home / "models")),
        c.bento_store: BentoStore(str(home / "bentos")),
        c.tmp_bento_store: BentoStore(str(home / "tmp")),
    }
    with ExitStack() as stack:
        for provider, value in patches.items():
            stack.enter_context(provider.patch(value))
        yield


def save_to_model_store(settings: Settings, bundle_path: Path, metadata: dict) -> str:
    """Copy a model bundle into the BentoML model store, with what made it.

    Args:
        settings: the platform settings (the store lives in `settings.bentoml_home`).
        bundle_path: folder written by `models.bundle.ModelBundle.save`.
        metadata: metrics, data window, feature service, hyperparameters (JSON-able values); merged
            over the bundle's own `metadata.json`, which already holds what made the model.

    Returns:
        The BentoML model tag, e.g. "recflow-recommender:abc123".

    Raises:
        FileNotFoundError: if `bundle_path` is not a folder.
    """
    import bentoml

    bundle_path = Path(bundle_path)
    if not bundle_path.is_dir():
        raise FileNotFoundError(f"Model bundle {bundle_path} is not a folder: train the models first.")
    bundle_meta = bundle_path / "metadata.json"
    made_by = json.loads(bundle_meta.read_text()) if bundle_meta.exists() else {}
    full = {"code_version": code_version(), **_json_safe({**made_by, **metadata}), "packaged_at": _now()}
    labels = {"profile": settings.profile, "code_version": full["code_version"]}
    services = full.get("feature_services") or {}
    if isinstance(services, dict):
        labels.update({f"feature_service_{k}": str(v) for k, v in services.items()})
    with bentoml_stores(settings), bentoml.models.create(MODEL_NAME, metadata=full, labels=labels) as model:
        # the validation package beside it is the gate's, not the service's
        shutil.copytree(
            bundle_path, Path(model.path) / BUNDLE_DIR, ignore=shutil.ignore_patterns(VALIDATION_DIR)
        )
    return str(model.tag)


def model_info(settings: Settings, tag: str) -> tuple[Path, dict]:
    """The bundle folder and the metadata of a model in the store.

    Raises:
        LookupError: if the tag is not in the store.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    with bentoml_stores(settings):
        try:
            model = bentoml.models.get(tag)
        except NotFound as e:
            raise LookupError(f"Model {tag!r} is not in the BentoML store {settings.bentoml_home}.") from e
        return Path(model.path) / BUNDLE_DIR, dict(model.info.metadata)


def latest_tag(settings: Settings) -> str | None:
    """The newest packaged model, or None when nothing was packaged."""
    import bentoml

    with bentoml_stores(settings):
        models = [m for m in bentoml.models.list() if m.tag.name == MODEL_NAME]
    if not models:
        return None
    return str(max(models, key=lambda m: m.info.creation_time).tag)


def champion_path(settings: Settings) -> Path:
    """The champion pointer file the service watches."""
    return settings.bentoml_home / "champion.json"


def promote(settings: Settings, tag: str) -> None:
    """Make `tag` the champion: the running service switches to it, new services load it.

    The pointer is replaced atomically, so a reader never sees a half-written file.

    Raises:
        LookupError: if the tag is not in the model store (a model that was not packaged is never served).
    """
    _, metadata = model_info(settings, tag)
    path = champion_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"tag": tag, "promoted_at": _now(), "metrics": metadata.get("metrics")}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".champion-")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def champion_tag(settings: Settings) -> str | None:
    """The promoted model's tag, or None when no model was promoted yet."""
    path = champion_path(settings)
    if not path.exists():
        return None
    return json.loads(path.read_text())["tag"]


def build_bento(settings: Settings) -> str:
    """Build a bento of the service with the champion model (the newest packaged one if none is promoted).

    Python packages are listed, not locked, so the build takes seconds.

    Returns:
        The bento tag, e.g. "recflow:xyz".

    Raises:
        LookupError: if no model was packaged.
    """
    import bentoml

    tag = champion_tag(settings) or latest_tag(settings)
    if tag is None:
        raise LookupError(f"No {MODEL_NAME} in {settings.bentoml_home}: package a trained bundle first.")
    _, metadata = model_info(settings, tag)
    labels = {"model": tag, "code_version": code_version()}
    with bentoml_stores(settings):
        bento = bentoml.bentos.build(
            SERVICE,
            name="recflow",
            labels=labels,
            description=f"recflow recommender, model {tag}, metrics {json.dumps(metadata.get('metrics'))}",
            include=BENTO_INCLUDE,
            exclude=["**/__pycache__"],
            python={"packages": BENTO_PACKAGES, "lock_packages": False},
            models=[tag],
            build_ctx=str(REPO_ROOT),
        )
    return str(bento.tag)


def _json_safe(value: dict) -> dict:
    """Metadata as plain JSON types (dates and paths become strings, numpy numbers become floats).

    BentoML refuses None anywhere in a model's metadata, so keys whose value is None are left out
    (a gate decision without a champion figure, for instance): readers use `.get`.
    """
    return _drop_none(json.loads(json.dumps(value, default=_default)))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value


def _default(obj: object) -> object:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
