"""dcgm-exporter's counters CSV: parsing, malformed rows, unknown fields, overrides."""

from __future__ import annotations

import pytest
import structlog
from gpu_helpers import rig_fixture, samples  # noqa: F401  (rig_fixture is the `rig` fixture)

from nodeagent.config import parse_config
from nodeagent.gpu.counters import CountersFileError, default_counters, load_counters_file, parse_counters
from nodeagent.settings import ConfigError

DCGM_EXPORTER_DEFAULTS = """\
# Format
# If line starts with a '#' it is considered a comment
# DCGM FIELD, Prometheus metric type, help message

# Clocks
DCGM_FI_DEV_SM_CLOCK,  gauge, SM clock frequency (in MHz).
DCGM_FI_DEV_MEM_CLOCK, gauge, Memory clock frequency (in MHz).
# Utilization (the sample period varies depending on the product),,
DCGM_FI_DEV_DEC_UTIL ,     gauge, Decoder utilization (in %).
DCGM_FI_DRIVER_VERSION,        label, Driver Version
"""


def test_parses_dcgm_exporter_file_with_comments_spaces_and_labels() -> None:
    rows = parse_counters(DCGM_EXPORTER_DEFAULTS, "default-counters.csv")
    assert [(r.name, r.type, r.line) for r in rows] == [
        ("DCGM_FI_DEV_SM_CLOCK", "gauge", 6),
        ("DCGM_FI_DEV_MEM_CLOCK", "gauge", 7),
        ("DCGM_FI_DEV_DEC_UTIL", "gauge", 9),
        ("DCGM_FI_DRIVER_VERSION", "label", 10),
    ]
    assert rows[0].help == "SM clock frequency (in MHz)."


def test_quoted_help_may_contain_commas() -> None:
    rows = parse_counters('DCGM_FI_DEV_GPU_TEMP, gauge, "GPU temperature, in C."\n')
    assert rows[0].help == "GPU temperature, in C."


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("DCGM_FI_DEV_GPU_TEMP, gauge", "expected 3 fields (NAME, type, help), got 2"),
        ("DCGM_FI_DEV_GPU_TEMP, gauge, help, extra", "expected 3 fields (NAME, type, help), got 4"),
        ("DCGM_FI_DEV_GPU_TEMP, histogramm, help", "type must be gauge, counter or label, got 'histogramm'"),
        ("DCGM FI DEV, gauge, help", "invalid field name 'DCGM FI DEV'"),
        ('DCGM_FI_DEV_GPU_TEMP, gauge, "unterminated', "not valid CSV"),
    ],
)
def test_malformed_row_names_file_and_line(line: str, message: str) -> None:
    text = f"# comment\nDCGM_FI_DEV_SM_CLOCK, gauge, ok\n\n{line}\n"
    with pytest.raises(CountersFileError) as err:
        parse_counters(text, "/etc/dcgm/counters.csv")
    assert err.value.line == 4
    assert str(err.value).startswith("/etc/dcgm/counters.csv: line 4: ")
    assert message in str(err.value)


def test_config_rejects_a_malformed_counters_file_at_load(tmp_path) -> None:
    path = tmp_path / "counters.csv"
    path.write_text("DCGM_FI_DEV_SM_CLOCK, gauge, ok\nDCGM_FI_DEV_GPU_TEMP gauge help\n")
    with pytest.raises(ConfigError) as err:
        parse_config(f"gpu: {{counters_file: {path}}}\n", "agent.yaml")
    assert "agent.yaml: gpu.counters_file:" in str(err.value)
    assert f"{path}: line 2: expected 3 fields" in str(err.value)
    with pytest.raises(CountersFileError, match="cannot read"):
        load_counters_file(str(tmp_path / "missing.csv"))


def test_default_set_is_dcgm_exporters_plus_extras() -> None:
    names = [r.name for r in default_counters()]
    for name in ("DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_PROF_PCIE_RX_BYTES",
                 "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_RETIRED_PENDING", "DCGM_FI_DEV_POWER_VIOLATION",
                 "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "DCGM_EXP_CLOCK_EVENTS_COUNT",
                 "DCGM_EXP_XID_ERRORS_COUNT", "DCGM_FI_DRIVER_VERSION"):
        assert name in names
    assert len(names) == len(set(names))


def test_unknown_fields_are_skipped_with_one_warning_and_the_rest_served(rig) -> None:
    text = (
        "DCGM_FI_DEV_GPU_TEMP, gauge, GPU temperature (in C).\n"
        "DCGM_FI_DEV_NOT_A_FIELD, gauge, nobody knows\n"
        "DCGM_FI_DEV_POWER_USAGE, gauge, Power draw (in W).\n"
        "DCGM_FI_DRIVER_VERSION, label, Driver Version\n"
    )
    with structlog.testing.capture_logs() as logs:
        r = rig("g5-1xa10g", counters=parse_counters(text, "site.csv"))
        for _ in range(3):
            r.cycle()
        out = r.text()
    unknown = [e for e in logs if e["event"] == "gpu_counter_unknown"]
    assert len(unknown) == 1 and unknown[0]["field"] == "DCGM_FI_DEV_NOT_A_FIELD" and unknown[0]["line"] == 2
    assert "DCGM_FI_DEV_NOT_A_FIELD" not in out
    families = [line.split()[2] for line in out.splitlines() if line.startswith("# TYPE ")]
    dcgm = [f for f in families if f.startswith("DCGM_")]
    assert dcgm == ["DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE"]


def test_file_type_and_help_win_like_in_dcgm_exporter(rig) -> None:
    text = "DCGM_FI_DEV_GPU_TEMP, counter, Temperature as the site likes it.\nDCGM_FI_DRIVER_VERSION, label, v\n"
    r = rig("g5-1xa10g", counters=parse_counters(text))
    r.cycle()
    out = r.text()
    assert "# HELP DCGM_FI_DEV_GPU_TEMP Temperature as the site likes it.\n" in out
    assert "# TYPE DCGM_FI_DEV_GPU_TEMP counter\n" in out


def test_label_rows_add_labels_and_wrong_types_are_skipped(rig) -> None:
    text = (
        "DCGM_FI_DEV_GPU_TEMP, gauge, t\n"
        "DCGM_FI_DRIVER_VERSION, label, Driver Version\n"
        "DCGM_FI_DEV_VBIOS_VERSION, label, VBIOS\n"
        "DCGM_FI_DEV_SERIAL, label, Serial\n"
        "DCGM_FI_DEV_NAME, gauge, a label field cannot be a gauge\n"
    )
    with structlog.testing.capture_logs() as logs:
        r = rig("g5-1xa10g", counters=parse_counters(text))
    r.cycle()
    labels, _ = samples(r.text(), "DCGM_FI_DEV_GPU_TEMP")[0]
    assert list(labels)[6:] == ["DCGM_FI_DEV_SERIAL", "DCGM_FI_DEV_VBIOS_VERSION", "DCGM_FI_DRIVER_VERSION"]
    assert labels["DCGM_FI_DEV_VBIOS_VERSION"] == "94.02.75.00.01"
    assert [e["field"] for e in logs if e["event"] == "gpu_counter_type_unsupported"] == ["DCGM_FI_DEV_NAME"]
