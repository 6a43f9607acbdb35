""":9341 against the exporters it stands in for, on the real Slurm 22.05 of the
suite: for each slurm.naming, every metric the exporter's source declares
(tests/fixtures/slurm/exporters/, the release named in each file) is served
with its exact name, type and label names, or is in NOT_SERVED with the
reason the README gives; the other mode's names are not served; and every
metric name SckyzO's own Grafana dashboards query is served.

What is served is read from the exposition text the collectors render
together, as Prometheus would read it. Fairshare (sshare) needs the
accounting cluster: test_slurm_accounting.py checks those names.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import scenario
from exporter_reference import EXPORTERS_DIR, Declared, dashboard_names, declared
from localslurm import LocalSlurm
from prometheus_client.parser import text_string_to_metric_families
from slurm_helpers import make_collectors

from nodeagent.catalogue import CATALOGUE
from nodeagent.catalogue import slurm as cat
from nodeagent.collectors.slurm.health import SlurmHealthCollector
from nodeagent.collectors.slurm.scontrol import ScontrolCollector
from nodeagent.collectors.slurm.sdiag import _KEYS, SdiagCollector
from nodeagent.collectors.slurm.sinfo import SinfoCollector
from nodeagent.collectors.slurm.squeue import SqueueCollector
from nodeagent.collectors.slurm.sshare import SshareCollector
from nodeagent.exposition import render
from nodeagent.model import merge_families

pytestmark = pytest.mark.slurm

README = Path(__file__).resolve().parents[2] / "README.md"
SCKYZO = declared(EXPORTERS_DIR / "sckyzo-v1.8.4.txt")
VPENSO = declared(EXPORTERS_DIR / "vpenso-0.20.txt")
SCKYZO_DASHBOARDS = dashboard_names(EXPORTERS_DIR / "sckyzo-v1.8.4-dashboards.txt")
REFERENCE = {"sckyzo": SCKYZO, "vpenso": VPENSO}

_SACCT = "SckyzO's sacct_efficiency collector, off by default there: nodeagent does not query slurmdbd's job history"
_HISTOGRAM = "a histogram; nodeagent serves each command's last run time (nodeagent_slurm_command_duration_seconds)"
# declared by the exporter, not served, and why (the README says the same)
NOT_SERVED: dict[str, dict[str, str]] = {
    "sckyzo": {
        "slurm_exporter_command_duration_seconds": _HISTOGRAM,
        "slurm_job_count_completed": _SACCT,
        "slurm_job_cpu_efficiency_avg": _SACCT,
        "slurm_job_cpu_hours_allocated": _SACCT,
        "slurm_job_mem_efficiency_avg": _SACCT,
        "slurm_sacct_last_refresh_timestamp_seconds": _SACCT,
    },
    "vpenso": {},
}
# names the dashboards query that no exporter serves: Prometheus writes `up` itself
PROMETHEUS_OWN = {"up"}
SSHARE_SOURCES = {"internal/collector/fairshare.go", "sshare.go"}
SDIAG_KEYS = set(_KEYS.values())
_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)


def served(cluster: LocalSlurm, naming: str) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (type, label names) as the exposition text of every Slurm
    collector says, per_user and per_account on. A family with nothing to
    count in the scenario (no job timed out) has no series, in the exporters
    too: its collector's family gives its type and labels."""
    classes = (SinfoCollector, SqueueCollector, SdiagCollector, SshareCollector, ScontrolCollector,
               SlurmHealthCollector)  # fmt: skip
    collectors = make_collectors(classes, slurm_conf=str(cluster.conf), naming=naming, per_user=True,
                                 per_account=True)  # fmt: skip
    try:
        families = merge_families(f for c in collectors for f in c.collect())
    finally:
        for c in collectors:
            c.close()
    text = render(families).decode()
    types = dict(_TYPE.findall(text))
    out: dict[str, tuple[str, frozenset[str]]] = {
        f.name: (f.type, frozenset(f.labelnames)) for f in families if not f.samples and f.name.startswith("slurm_")
    }
    # at most the families of job states the scenario has no job in
    assert set(out) <= {f"slurm_{k}_{s}" for k in ("queue", "cores") for s in cat.EXPORTER_JOB_STATES}, sorted(out)
    # sdiag's values Slurm does not print yet (no backfill cycle, less than a
    # minute of statistics) are left out; parse_sdiag reads them when printed
    for key, spec in cat.SCHEDULER.items():
        if spec.name not in types:
            assert key in SDIAG_KEYS, spec.name
            out[spec.name] = (spec.type, frozenset(spec.labels))
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            # the parser drops a counter's _total from the family name, not from the sample's
            name = sample.name if sample.name in types else fam.name
            out[name] = (types[name], frozenset(sample.labels))
    return out


def compare(reference: dict[str, Declared], got: dict[str, tuple[str, frozenset[str]]], naming: str) -> list[str]:
    problems = []
    for name, want in sorted(reference.items()):
        if name in NOT_SERVED[naming] or want.source in SSHARE_SOURCES:
            continue
        if name not in got:
            problems.append(f"{name}: not served")
        elif got[name] != (want.type, frozenset(want.labels)):
            problems.append(f"{name}: served as {got[name]}, {want.source} declares {(want.type, want.labels)}")
    return problems


@pytest.mark.parametrize("naming", ["sckyzo", "vpenso"])
def test_served_as_the_exporter_declares(slurm_scenario: tuple[LocalSlurm, dict[str, int]], naming: str) -> None:
    cluster, _ = slurm_scenario
    got = served(cluster, naming)
    assert not compare(REFERENCE[naming], got, naming)
    # the declared label order too: the catalogue (or its vpenso variant) is what the collectors use
    for name, want in REFERENCE[naming].items():
        if name in got and name not in NOT_SERVED[naming]:
            spec = CATALOGUE.lookup(name)
            assert spec is not None, name
            labels = cat.VPENSO_LABELS.get(name, spec.labels) if naming == "vpenso" else spec.labels
            assert labels == want.labels, name
    if naming == "vpenso":  # SckyzO's own names stay out
        assert not sorted(set(got) & cat.SCKYZO_ONLY)
    # nodeagent's own families are served under their own names either way
    for name in ("slurm_nodes_powered_down", "slurm_queue_pending_reason", "slurm_cluster_nodes_idle",
                 "slurm_cpus_idle_usable", "nodeagent_slurm_up", "nodeagent_slurm_poll_failures_total",
                 "nodeagent_slurm_data_age_seconds"):  # fmt: skip
        assert name in got, name


def test_not_served_is_in_the_readme() -> None:
    text = README.read_text()
    for naming, names in NOT_SERVED.items():
        for name in names:
            assert f"`{name}`" in text, (naming, name)
        assert set(names) <= set(REFERENCE[naming])


def test_every_name_sckyzo_dashboards_query_is_served(slurm_scenario: tuple[LocalSlurm, dict[str, int]]) -> None:
    cluster, _ = slurm_scenario
    got = served(cluster, "sckyzo")
    series = set(got)
    for name, (type_, _) in got.items():  # a histogram's or a summary's series names
        if type_ in ("histogram", "summary"):
            series |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    fairshare = {n for n, d in SCKYZO.items() if d.source in SSHARE_SOURCES}  # test_slurm_accounting.py
    histogram = {f"slurm_exporter_command_duration_seconds{s}" for s in ("_bucket", "_sum", "_count")}
    missing = set(SCKYZO_DASHBOARDS) - series - fairshare - PROMETHEUS_OWN
    # the only ones: those NOT_SERVED lists (with its reasons)
    assert missing == histogram | {"slurm_sacct_last_refresh_timestamp_seconds"}
    assert fairshare & set(SCKYZO_DASHBOARDS) <= set(SCKYZO)


def test_scenario_values_in_sckyzo_families(slurm_scenario: tuple[LocalSlurm, dict[str, int]]) -> None:
    """The families only SckyzO names, with the scenario's numbers: licenses,
    the reservation and its nodes, per-node series, drain reasons, versions."""
    from slurm_helpers import samples

    cluster, _ = slurm_scenario
    collectors = make_collectors((SinfoCollector, ScontrolCollector), slurm_conf=str(cluster.conf))
    try:
        s = samples(merge_families(f for c in collectors for f in c.collect()))
    finally:
        for c in collectors:
            c.close()
    for name, (total, used, free, reserved) in scenario.EXPECTED_LICENSES.items():
        got = tuple(s[f"slurm_license_{k}"][(name,)] for k in ("total", "used", "free", "reserved"))
        assert got == (total, used, free, reserved), name
    info = s["slurm_reservation_info"]
    assert list(info) == [("maint_window", "ACTIVE", "root", "node[6-8]", "", "IGNORE_JOBS,SPEC_NODES")]
    assert s["slurm_reservation_node_count"][("maint_window",)] == 3
    assert s["slurm_reservation_core_count"][("maint_window",)] == 24
    assert s["slurm_reservation_end_time_seconds"][("maint_window",)] > s["slurm_reservation_start_time_seconds"][
        ("maint_window",)
    ]
    for key, expected in scenario.EXPECTED_RESERVATION_NODES.items():
        assert s[f"slurm_reservation_nodes_{key}"][("maint_window",)] == expected, key
    version = cluster.run("sinfo", "--version").stdout.split()[1]
    assert s["slurm_info"][("general", "", version)] == 1
    assert s["slurm_info"][("binary", "squeue", version)] == 1
    # per node: node9 is in cloud and all, so two series; status is sinfo's StateLong
    assert s["slurm_node_status"][("node9", "mixed#", "cloud")] == 1
    assert s["slurm_node_cpu_idle"][("node10", "idle~", "all")] == 8
    assert s["slurm_node_mem_total"][("node1", "mixed", "gpu")] == 16000
    # one series per node and partition: node1-3 2 each (gpu, all), node4 3 (cpu, we|rd, all),
    # node5 2, node6-8 2 each, node9-10 2 each
    assert len(s["slurm_node_cpu_total"]) == 21
    reasons = s["slurm_node_drain_reason_info"]
    assert {(node, reason) for node, reason, _ in reasons} == {(n, "scenario") for n in ("node6", "node7", "node8")}
    assert s["nodeagent_slurm_label_overflow"][("node",)] == 0


def test_per_node_families_capped(slurm_scenario: tuple[LocalSlurm, dict[str, int]]) -> None:
    """Over slurm.max_nodes, the per-node families are left out whole (no
    partial set) and the node count says why."""
    from slurm_helpers import samples

    cluster, _ = slurm_scenario
    for naming in ("sckyzo", "vpenso"):
        (c,) = make_collectors((SinfoCollector,), slurm_conf=str(cluster.conf), naming=naming, max_nodes=9)
        try:
            s = samples(c.collect())
        finally:
            c.close()
        assert not any(n.startswith("slurm_node_") for n in s), naming
        assert s["nodeagent_slurm_label_overflow"][("node",)] == 10
        assert s["slurm_cluster_nodes_total"][()] == 10  # the rest is served as usual
