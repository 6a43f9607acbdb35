from nodeagent.exposition import escape_label_value, format_value, render
from nodeagent.model import MetricFamily, merge_families


def test_render_keeps_declared_label_order_and_exact_counter_name():
    fam = MetricFamily("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy (in mJ).", "counter",
                       ("gpu", "UUID", "Hostname"))
    fam.add(("0", "GPU-1", "node-1"), 123456789)
    text = render([fam]).decode()
    assert text == (
        "# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy (in mJ).\n"
        "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n"
        'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-1",Hostname="node-1"} 123456789\n'
    )


def test_empty_families_are_omitted():
    assert render([MetricFamily("x", "h", "gauge")]) == b""


def test_hostile_label_values_are_escaped():
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    fam = MetricFamily("slurm_user_jobs_running", "h", "gauge", ("user",))
    fam.add(('x"}\n evil 1',), 1)
    line = render([fam]).decode().splitlines()[-1]
    assert line == 'slurm_user_jobs_running{user="x\\"}\\n evil 1"} 1'


def test_value_formats():
    assert format_value(1.0) == "1"
    assert format_value(0.25) == "0.25"
    assert format_value(float("nan")) == "NaN"
    assert format_value(float("inf")) == "+Inf"
    assert format_value(float("-inf")) == "-Inf"
    assert format_value(69.611, "fixed6") == "69.611000"
    assert format_value(7, "fixed6") == "7"
    assert format_value(1e20) == "1e+20"


def test_merge_families_joins_same_name_and_reports_conflicts():
    a = MetricFamily("m", "h", "gauge", ("x",), [(("1",), 1.0)])
    b = MetricFamily("m", "h", "gauge", ("x",), [(("2",), 2.0), (("1",), 9.0)])
    c = MetricFamily("m", "h", "counter", ("x",), [(("3",), 3.0)])
    problems: set[str] = set()
    merged = merge_families([a, b, c], problems)
    assert len(merged) == 1 and merged[0].samples == [(("1",), 1.0), (("2",), 2.0)]
    assert problems == {"m"}
    assert a.samples == [(("1",), 1.0)]  # the collector's own family is untouched


def test_a_family_that_cannot_be_written_is_left_out_alone():
    good = MetricFamily("node_good", "h", "gauge", ("x",), [(("a",), 1.0)])
    broken = MetricFamily("node_broken", "h", "gauge", ("x",), [(("a",), 1.0), (("b",), None)])  # type: ignore[list-item]
    bad: list[str] = []
    text = render([good, broken], bad).decode()
    assert 'node_good{x="a"} 1' in text and "node_broken" not in text
    assert bad == ["node_broken"]


def test_optional_labels_without_a_value_are_left_out_where_the_family_says_so():
    # dcgm-exporter writes GPU_I_* and hpc_job only where they have a value;
    # node_exporter writes empty values (e.g. duplex=""), so it is per family
    fam = MetricFamily("DCGM_FI_DEV_GPU_TEMP", "t", "gauge", ("gpu", "GPU_I_ID", "hpc_job"),
                       omit_empty_labels=True)
    fam.add(("0", "", "42"), 40)
    fam.add(("1", "3", ""), 41)
    fam.add(("", "", ""), 1)
    text = render([fam]).decode()
    assert 'DCGM_FI_DEV_GPU_TEMP{gpu="0",hpc_job="42"} 40\n' in text
    assert 'DCGM_FI_DEV_GPU_TEMP{gpu="1",GPU_I_ID="3"} 41\n' in text
    assert "DCGM_FI_DEV_GPU_TEMP 1\n" in text
    plain = MetricFamily("node_x", "x", "gauge", ("a", "b"))
    plain.add(("", "1"), 2)
    assert 'node_x{a="",b="1"} 2\n' in render([plain]).decode()
    merged = merge_families([fam, MetricFamily("DCGM_FI_DEV_GPU_TEMP", "t", "gauge", fam.labelnames)])
    assert merged[0].omit_empty_labels
