"""Allocated but idle: a job holds the GPU and does nothing with it."""

from __future__ import annotations

from pathlib import Path

from gpu_helpers import Rig, samples, value

DESCRIPTION = """\
name: idle
models:
  a10g:
    name: NVIDIA A10G
    memory_mib: 23028
    fields: {DCGM_FI_DEV_GPU_UTIL: 0}
gpus:
  - {model: a10g, processes: [{pid: 48211, used_mib: 1000}]}    # job 4242, idle
  - {model: a10g, processes: [{pid: 51007, used_mib: 1000}], fields: {DCGM_FI_DEV_GPU_UTIL: 97}}
  - {model: a10g}                                                # no job
"""


def _rig(tmp_path: Path, **kw: object) -> Rig:
    path = tmp_path / "idle.yaml"
    path.write_text(DESCRIPTION)
    return Rig(str(path), idle_threshold=5, idle_after=600, **kw)  # type: ignore[arg-type]


def test_idle_job_gpu_is_flagged_after_idle_after(tmp_path) -> None:
    r = _rig(tmp_path)
    try:
        r.cycle()
        text = r.text()
        assert value(text, "nodeagent_gpu_allocated_idle", gpu="0", hpc_job="4242") == "0"
        assert value(text, "nodeagent_gpu_allocated_idle_seconds", gpu="0") == "0"
        r.clock.advance(300)
        r.cycle()
        assert value(r.text(), "nodeagent_gpu_allocated_idle_seconds", gpu="0") == "300"
        assert value(r.text(), "nodeagent_gpu_allocated_idle", gpu="0") == "0"
        r.clock.advance(301)
        r.cycle()
        text = r.text()
        assert value(text, "nodeagent_gpu_allocated_idle", gpu="0", hpc_job="4242") == "1"
        assert value(text, "nodeagent_gpu_allocated_idle_seconds", gpu="0") == "601"
        # busy job GPU: 0; GPU without a job: no series at all
        assert value(text, "nodeagent_gpu_allocated_idle", gpu="1", hpc_job="4243") == "0"
        assert value(text, "nodeagent_gpu_allocated_idle_seconds", gpu="1") == "0"
        assert {labels["gpu"] for labels, _ in samples(text, "nodeagent_gpu_allocated_idle")} == {"0", "1"}
    finally:
        r.close()


def test_idle_time_restarts_for_a_new_job_and_ends_with_the_job(tmp_path) -> None:
    from nodeagent.gpu.fake import FakeProcess

    r = _rig(tmp_path)
    try:
        r.cycle()
        r.clock.advance(700)
        r.cycle()
        assert value(r.text(), "nodeagent_gpu_allocated_idle", gpu="0") == "1"
        r.fake.set_processes(0, [FakeProcess(51008, 10)])  # job 4244 now
        r.clock.advance(15)  # the next read of the process list
        r.cycle()
        assert value(r.text(), "nodeagent_gpu_allocated_idle_seconds", gpu="0", hpc_job="4244") == "0"
        r.fake.set_processes(0, [])
        r.clock.advance(15)
        r.cycle()
        assert value(r.text(), "nodeagent_gpu_allocated_idle", gpu="0") is None
    finally:
        r.close()


def test_process_metrics_are_opt_in(tmp_path) -> None:
    r = _rig(tmp_path)
    try:
        r.cycle()
        assert "nodeagent_gpu_processes" not in r.text()
    finally:
        r.close()
    r = _rig(tmp_path, process_metrics=True)
    try:
        r.cycle()
        text = r.text()
        assert value(text, "nodeagent_gpu_processes", gpu="0") == "1"
        assert value(text, "nodeagent_gpu_processes", gpu="2") == "0"
        assert value(text, "nodeagent_gpu_process_memory_used_bytes", gpu="0", hpc_job="4242") == str(1000 * 2**20)
    finally:
        r.close()
