"""Strategy choice, and MirroredStrategy over two logical CPUs matching the default strategy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from models.hardware import choose_strategy, configure_precision
from recflow.settings import TrainSettings

ROOT = Path(__file__).resolve().parents[2]


def test_auto_strategy_is_default_on_one_device_and_multiworker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert choose_strategy(TrainSettings(distribute="auto")).num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="TF_CONFIG"):
        choose_strategy(TrainSettings(distribute="multiworker"))
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        choose_strategy(TrainSettings(distribute="auto"))


def test_mixed_precision_policy_is_set_and_reset():
    try:
        assert (
            configure_precision(TrainSettings(mixed_precision=True, mixed_dtype="float16")) == "mixed_float16"
        )
        assert tf.keras.mixed_precision.global_policy().name == "mixed_float16"
        auto = configure_precision(TrainSettings(mixed_precision=True))  # bfloat16 on a CPU, float16 on a GPU
        assert auto == ("mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16")
    finally:
        assert configure_precision(TrainSettings(mixed_precision=False)) == "float32"


def test_auto_mixed_precision_follows_the_hardware(tmp_path):
    from models.hardware import cpu_runs_bfloat16, precision_policy

    native = tmp_path / "native"
    native.write_text("processor : 0\nflags : fpu sse avx512f avx512_bf16 amx_tile\n")
    plain = tmp_path / "plain"
    plain.write_text("processor : 0\nflags : fpu sse avx2\n")
    assert cpu_runs_bfloat16(str(native)) and not cpu_runs_bfloat16(str(plain))
    assert not cpu_runs_bfloat16(str(tmp_path / "missing"))
    gpu = bool(tf.config.list_logical_devices("GPU"))
    auto = precision_policy(TrainSettings())
    assert auto == ("mixed_float16" if gpu else "mixed_bfloat16" if cpu_runs_bfloat16() else "float32")
    assert precision_policy(TrainSettings(mixed_precision=False)) == "float32"


def _mirrored_worker() -> dict:
    """Run tests/model/mirrored_worker.py in a fresh process (two logical CPUs) and read its result."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests/model/mirrored_worker.py")],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
        cwd=ROOT,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_the_model_family_under_mirrored_over_two_logical_cpus_matches_the_default_strategy():
    out = _mirrored_worker()
    assert out["logical_cpus"] == 2
    assert out["default"]["replicas"] == 1 and out["mirrored"]["replicas"] == 2
    assert out["default"]["ndcg@10"] > 0.5, out  # it learned the walks
    for metric in ("hr@10", "ndcg@10"):
        assert out["mirrored"][metric] == pytest.approx(out["default"][metric], abs=0.05), out


def _free_ports(n: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multiworker_mirrored_with_two_local_workers_trains_the_same_model():
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CONFIG": json.dumps(tf_config)}
        procs.append(
            subprocess.Popen(
                [sys.executable, str(ROOT / "tests/model/multiworker_worker.py")],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=ROOT,
            )
        )
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=400)
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, stderr[-3000:]
        results.append(json.loads(lines[-1][len("RESULT ") :]))
    for out in results:
        assert out["multiworker"] and out["replicas"] == 2
    assert results[0]["hr@10"] == pytest.approx(results[1]["hr@10"], abs=1e-6)
    assert results[0]["ndcg@10"] == pytest.approx(results[1]["ndcg@10"], abs=1e-6)
