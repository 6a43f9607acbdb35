"""Every family nodeagent emits is declared in the catalogue with the same type
and label names, so names are written in one place only."""

from __future__ import annotations

from pathlib import Path

import pytest
from testlib import FIXTURES

from nodeagent.catalogue import CATALOGUE
from nodeagent.config import parse_config
from nodeagent.daemon import Agent
from nodeagent.roles import ROLE_TABLE

P5 = FIXTURES / "p5"


def fixture_cfg(tmp_path: Path):
    text = (
        f"paths:\n  procfs: '{P5 / 'proc'}'\n  sysfs: '{P5 / 'sys'}'\n  rootfs: '{P5 / 'root'}'\n"
        f"  debugfs: '{P5 / 'debug'}'\n  textfile_dir: '{P5 / 'textfile'}'\n"
    )
    return parse_config(text, str(tmp_path / "config.yaml"))


def textfile_names() -> set[str]:
    """Families read from *.prom files are the user's, not ours."""
    from prometheus_client.parser import text_string_to_metric_families

    names = set()
    for f in (P5 / "textfile").glob("*.prom"):
        for fam in text_string_to_metric_families(f.read_text()):
            names |= {s.name for s in fam.samples}
    return names


@pytest.mark.parametrize("role", sorted(ROLE_TABLE))
def test_every_emitted_family_is_in_the_catalogue(tmp_path, role):
    cfg = fixture_cfg(tmp_path)
    agent = Agent.build(cfg, role, with_sinks=False)
    user_names = textfile_names()
    problems = []
    try:
        for group in agent.groups.values():
            for fam in group.get(max_age=0).families:
                if fam.name in user_names:
                    continue
                spec = CATALOGUE.lookup(fam.name)
                if spec is None:
                    problems.append(f"{fam.name}: not in the catalogue")
                elif spec.type != fam.type:
                    problems.append(f"{fam.name}: type {fam.type}, catalogue says {spec.type}")
                elif spec.labels != fam.labelnames:
                    problems.append(f"{fam.name}: labels {fam.labelnames}, catalogue says {spec.labels}")
    finally:
        agent.close()
    assert not problems, "\n".join(problems)


def test_catalogue_names_are_unique_and_documented():
    seen = set()
    for spec in CATALOGUE:
        assert spec.name not in seen
        seen.add(spec.name)
        assert spec.help.strip(), f"{spec.name} has no help text"
        assert spec.collector, f"{spec.name} names no collector"


def test_a_single_value_family_from_its_spec():
    from nodeagent.catalogue import host, host_extra, sinks

    fam = sinks.CW_SPOOL_DATUMS.single(3)
    assert (fam.name, fam.type, fam.samples) == ("nodeagent_cloudwatch_spool_datums", "gauge", [((), 3)])
    fam = host.VMSTAT.single(7.0, field="pgfault")
    assert (fam.name, fam.samples) == ("node_vmstat_pgfault", [((), 7.0)])
    with pytest.raises(ValueError, match="0 label values for 1 label names"):
        host_extra.NODE_TEXTFILE_MTIME_SECONDS.single(1.0)  # a labelled family is not a single value
