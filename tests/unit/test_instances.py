"""The one instance-shape table (nodeagent/instances.py) that the GPU sampler
and the checks read."""

from __future__ import annotations

import re

from nodeagent.instances import INSTANCE_SHAPES, expected_efa, known_instance_type

# family[generation][attributes].size, as EC2 names them (p6-b300.48xlarge, g4dn.metal)
_TYPE = re.compile(r"^[a-z]+\d[a-z0-9-]*\.(\d*xlarge|metal)$")


def test_every_entry_is_an_instance_type_with_a_plausible_shape():
    for itype, shape in INSTANCE_SHAPES.items():
        assert _TYPE.match(itype), itype
        assert shape.gpus in (0, 1, 4, 8), itype
        assert 0 <= shape.efa <= 32, itype
        assert shape.gpus or shape.efa, f"{itype}: neither GPUs nor EFA, nothing to expect"


def test_efa_expected_only_where_the_type_has_efa():
    assert expected_efa("p5.48xlarge") == 32
    assert expected_efa("p4de.24xlarge") == 4
    assert expected_efa("p6-b200.48xlarge") == 8
    assert expected_efa("g5.2xlarge") is None  # known, no EFA: not judged
    assert expected_efa("m7i.large") is None
    assert expected_efa(None) is None


def test_known_types():
    assert known_instance_type("trn1.32xlarge") and known_instance_type("g4dn.xlarge")
    assert not known_instance_type("HVM domU") and not known_instance_type("") and not known_instance_type(None)
