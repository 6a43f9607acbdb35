"""`nodeagent --role compute` serves the GPU group on its port (fake backend)."""

from __future__ import annotations

import signal
import time

from gpu_helpers import fetch, free_port, samples, value


def test_compute_role_serves_dcgm_names_from_the_fake_backend(tmp_path, agent_process) -> None:
    port = free_port()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        "exporters:\n"
        f"  host: {{listen: '127.0.0.1:{free_port()}', enabled: false}}\n"
        f"  gpu: {{listen: '127.0.0.1:{port}', min_interval: 0}}\n"
        "collectors: {disable_defaults: true, enable: [gpu, gpu_status]}\n"
        "hostname: demo-node\n"
        "gpu: {backend: fake, fake_description: p5-8xh100, interval: 0.5, fake_events: false}\n"
    )
    agent = agent_process(["--role", "compute", "--config", str(cfg)])
    try:
        text = fetch(f"http://127.0.0.1:{port}/metrics")
        deadline = time.monotonic() + 10
        # GPM profiling appears from the second sampling cycle on
        while "DCGM_FI_PROF_SM_ACTIVE{" not in text and time.monotonic() < deadline:
            time.sleep(0.3)
            text = fetch(f"http://127.0.0.1:{port}/metrics")
        assert "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n" in text
        assert len(samples(text, "DCGM_FI_DEV_GPU_TEMP")) == 8
        assert len(samples(text, "DCGM_FI_PROF_SM_ACTIVE")) == 8
        assert value(text, "DCGM_FI_DEV_GPU_TEMP", gpu="0", Hostname="demo-node") is not None
        assert 'nodeagent_collector_success{collector="gpu"} 1' in text
        assert value(text, "nodeagent_gpu_backend_info", backend="fake", profiling="gpm") == "1"
        assert value(text, "nodeagent_gpus", state="present") == "8"
    finally:
        rc, _out, err = agent.stop(signal.SIGTERM)
    assert rc == 0, err[-2000:]
    assert "Traceback" not in err
