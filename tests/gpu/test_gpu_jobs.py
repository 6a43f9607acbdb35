"""Which Slurm job owns each GPU: cgroup v1/v2, environ fallback, mapping dir."""

from __future__ import annotations

import structlog
from gpu_helpers import PROC, Rig, fixture_host, rig_fixture, samples, value  # noqa: F401  (rig_fixture is the `rig` fixture)

from nodeagent.collectors.gpu.jobs import (
    JobResolver,
    MappingDir,
    parse_cgroup_job,
    parse_environ_job,
    parse_mapping_file,
)
from nodeagent.gpu.fake import FakeProcess
from nodeagent.host import Host, Roots


def test_cgroup_v1_job() -> None:
    text = (PROC / "48211" / "cgroup").read_text()
    assert parse_cgroup_job(text) == "4242"
    assert parse_cgroup_job("5:devices:/slurm_node-7/uid_2001/job_5151/step_batch/task_0\n") == "5151"
    assert parse_cgroup_job("4:memory:/slurm/uid_0/job_77\n") == "77"


def test_cgroup_v2_job() -> None:
    assert parse_cgroup_job((PROC / "51007" / "cgroup").read_text()) == "4243"
    assert parse_cgroup_job("0::/system.slice/slurmstepd.scope/job_12/step_extern/user/task_0\n") == "12"


def test_non_slurm_cgroups_have_no_job() -> None:
    assert parse_cgroup_job("0::/user.slice/user-1000.slice/session-3.scope\n") is None
    assert parse_cgroup_job("0::/system.slice/slurmstepd.scope/system\n") is None
    assert parse_cgroup_job("0::/docker/job_12/x\n") is None  # job_ outside a Slurm hierarchy
    assert parse_cgroup_job("garbage") is None


def test_environ_fallback_and_hostile_values() -> None:
    assert parse_environ_job(b"HOME=/root\0SLURM_JOB_ID=4244\0X=1\0") == "4244"
    assert parse_environ_job(b"HOME=/root\0") is None
    assert parse_environ_job((PROC / "666" / "environ").read_bytes()) is None
    assert parse_environ_job(b"SLURM_JOB_ID=" + b"9" * 65 + b"\0") is None


def test_resolver_prefers_cgroup_then_environ_and_caches_seen_pids() -> None:
    resolver = JobResolver(fixture_host())
    resolver.begin_cycle()
    assert resolver.job_of(48211) == "4242"  # its environ says 9999: the cgroup wins
    assert resolver.job_of(51008) == "4244"  # no Slurm cgroup: environ
    assert resolver.job_of(2207) is None  # exited, no /proc entry
    assert resolver.job_of(666) is None  # hostile environ value dropped
    resolver.begin_cycle()
    assert resolver._cache == {48211: "4242", 51008: "4244", 2207: None, 666: None}
    resolver.begin_cycle()  # not seen last cycle: forgotten
    assert resolver._cache == {}


def test_mapping_dir_format(tmp_path) -> None:
    d = tmp_path / "run" / "dcgm-job-mapping"
    d.mkdir(parents=True)
    (d / "0").write_text("1234\n1235\n\n1234\n")
    (d / "3").write_text("77\n")
    (d / "1.2").write_text("5000\n")
    (d / "README").write_text("not a gpu\n")
    (d / "4").write_text('evil"} 1\n' + "x" * 100 + "\n88\n")
    host = Host(Roots(rootfs=str(tmp_path)))
    with structlog.testing.capture_logs() as logs:
        mapping = MappingDir(host, "/run/dcgm-job-mapping").read()
        MappingDir(host, "/run/dcgm-job-mapping").read()
    assert mapping == {"0": ["1234", "1235"], "3": ["77"], "1.2": ["5000"], "4": ["88"]}
    assert len([e for e in logs if e["event"] == "gpu_job_id_rejected"]) == 4
    assert parse_mapping_file("a\nb\n") == (["a", "b"], [])
    missing = MappingDir(host, "/nope")
    with structlog.testing.capture_logs() as logs:
        assert missing.read() == {} and missing.read() == {}
    assert [e["event"] for e in logs] == ["gpu_job_mapping_dir_missing"]


def test_jobs_from_processes_label_the_gpu_series(rig) -> None:
    r = rig("p5-8xh100")
    r.cycle()
    text = r.text()
    jobs = {labels["gpu"]: labels.get("hpc_job", "") for labels, _ in samples(text, "DCGM_FI_DEV_GPU_TEMP")}
    assert jobs == {"0": "4242", "1": "4242", "2": "4242", "3": "4242", "4": "4243", "5": "4244", "6": "", "7": ""}


def test_several_jobs_on_one_gpu_give_one_series_each_and_ended_jobs_disappear(rig) -> None:
    r = rig("p5-8xh100")
    r.fake.set_processes(0, [FakeProcess(48211, 1000), FakeProcess(51007, 2000)])
    r.cycle()
    temp = [labels.get("hpc_job", "") for labels, _ in samples(r.text(), "DCGM_FI_DEV_GPU_TEMP")
            if labels["gpu"] == "0"]
    assert temp == ["4242", "4243"]
    # job 4243 ends on GPU 0 and job 4242's processes exit everywhere
    r.fake.set_processes(0, [])
    for gpu in range(1, 4):
        r.fake.set_processes(gpu, [])
    r.cycle()  # the process lists are read every gpu.process_interval (15 s)
    assert "4242" in r.text()
    r.clock.advance(15)
    r.cycle()
    text = r.text()
    assert "4242" not in text
    assert {labels.get("hpc_job", "") for labels, _ in samples(text, "DCGM_FI_DEV_GPU_TEMP")} == {"", "4243", "4244"}
    # no job anywhere: the hpc_job label is gone entirely
    for gpu in range(8):
        r.fake.set_processes(gpu, [])
    r.clock.advance(15)
    r.cycle()
    text = r.text()
    assert "hpc_job" not in text


def test_mapping_dir_jobs_join_process_jobs(rig, tmp_path) -> None:
    d = tmp_path / "map"
    d.mkdir()
    (d / "6").write_text("9001\n")
    (d / "0").write_text("4242\n")  # same job as its processes: one series
    host = Host(Roots(procfs=str(PROC), sysfs=str(tmp_path / "sys"), rootfs=str(tmp_path), dev=str(tmp_path)))
    r = rig("p5-8xh100", host=host, hpc_job_mapping_dir="/map")
    r.cycle()
    jobs = {labels["gpu"]: labels.get("hpc_job", "") for labels, _ in samples(r.text(), "DCGM_FI_DEV_SM_CLOCK")}
    assert jobs["6"] == "9001" and jobs["0"] == "4242" and jobs["7"] == ""
    (d / "6").unlink()
    r.cycle()
    ((labels, _),) = [s for s in samples(r.text(), "DCGM_FI_DEV_SM_CLOCK") if s[0]["gpu"] == "6"]
    assert "hpc_job" not in labels  # no job: the label is left out, as dcgm-exporter does


def test_job_count_per_gpu_is_bounded(rig, tmp_path) -> None:
    (tmp_path / "map").mkdir()
    (tmp_path / "map" / "0").write_text("".join(f"{n}\n" for n in range(100, 110)))
    host = Host(Roots(procfs=str(PROC), sysfs=str(tmp_path / "sys"), rootfs=str(tmp_path), dev=str(tmp_path)))
    r = rig("g5-1xa10g", host=host, max_jobs_per_gpu=2, hpc_job_mapping_dir="/map")
    with structlog.testing.capture_logs() as logs:
        r.cycle()
        r.cycle()
    assert {labels.get("hpc_job", "") for labels, _ in samples(r.text(), "DCGM_FI_DEV_GPU_TEMP")} == {"100", "101"}
    assert [e["event"] for e in logs].count("gpu_jobs_truncated") == 1


def test_job_attribution_can_be_switched_off() -> None:
    r = Rig("p5-8xh100", job_attribution=False)
    try:
        r.cycle()
        assert "hpc_job" not in r.text()
        assert r.fake.calls[("nvmlDeviceGetComputeRunningProcesses", 0)] == 0
    finally:
        r.close()


def test_process_memory_by_job_is_bounded_like_hpc_job(rig, tmp_path) -> None:
    proc = tmp_path / "proc"
    for pid in range(1000, 1010):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cgroup").write_text(f"0::/system.slice/slurmstepd.scope/job_{pid}/step_0/user/task_0\n")
    host = Host(Roots(procfs=str(proc), sysfs=str(tmp_path / "sys"), rootfs=str(tmp_path), dev=str(tmp_path)))
    r = rig("p5-8xh100", host=host, process_metrics=True, max_jobs_per_gpu=4)
    # ten jobs on GPU 0, 100 MiB each, and 50 MiB of a process in no job
    r.fake.set_processes(0, [FakeProcess(pid, 100) for pid in range(1000, 1010)] + [FakeProcess(999, 50)])
    r.cycle()
    text = r.text()
    jobs = {labels.get("hpc_job", "") for labels, _ in samples(text, "DCGM_FI_DEV_GPU_TEMP") if labels["gpu"] == "0"}
    assert jobs == {"1000", "1001", "1002", "1003"}
    memory = {labels.get("hpc_job", ""): float(v)
              for labels, v in samples(text, "nodeagent_gpu_process_memory_used_bytes")
              if labels["gpu"] == "0"}
    mib = 1024 * 1024
    # the same four jobs; the other six jobs' memory is folded into "" with the job-less process
    assert memory == {"1000": 100 * mib, "1001": 100 * mib, "1002": 100 * mib, "1003": 100 * mib,
                      "": (6 * 100 + 50) * mib}
