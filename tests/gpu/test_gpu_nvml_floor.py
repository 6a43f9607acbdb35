"""The nvidia-ml-py floor: no release whose process struct scrambles PIDs, and
every pynvml name nodeagent uses exists in the floor release.

nvidia-ml-py 12.535.77 filled nvmlDeviceGetComputeRunningProcesses from a
32-byte struct that only drivers 535.43-535.86 used: on every other driver
the PIDs and memory it returned were scrambled (so hpc_job was wrong).
12.535.108 fixed it; NVML_FI_DEV_GET_GPU_RECOVERY_ACTION first appears in
12.570.86, which is the floor. The names of the floor release are kept in
fixtures/pynvml-12.570.86-names.txt (made from its wheel).
"""

from __future__ import annotations

import re
from pathlib import Path

import pynvml
import tomllib

ROOT = Path(__file__).resolve().parents[2]
FLOOR_NAMES = Path(__file__).resolve().parent / "fixtures" / "pynvml-12.570.86-names.txt"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def _floor() -> tuple[int, ...]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if d.startswith("nvidia-ml-py")]
    m = re.fullmatch(r"nvidia-ml-py>=([0-9.]+)", spec)
    assert m, spec
    return _version(m.group(1))


def test_floor_excludes_the_release_with_the_wrong_process_struct() -> None:
    assert _floor() >= _version("12.570.86") > _version("12.535.77")


def _used_names() -> set[str]:
    used: set[str] = set()
    for path in (ROOT / "src" / "nodeagent").rglob("*.py"):
        used |= set(re.findall(r"\bpynvml\.([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
    return used - {"py"}  # "pynvml.py", the module file, named in comments


def test_every_pynvml_name_used_exists_in_the_floor_release() -> None:
    floor = {line for line in FLOOR_NAMES.read_text().splitlines() if line and not line.startswith("#")}
    # pynvml makes its NVMLError_* classes at import from the NVML_ERROR_* constants
    error_constants = {getattr(pynvml, n): n for n in dir(pynvml) if n.startswith("NVML_ERROR_")}
    missing = []
    for name in sorted(_used_names()):
        if name.startswith("NVMLError_"):
            constant = error_constants.get(getattr(pynvml, name)().value)
            if constant not in floor:
                missing.append(f"{name} ({constant})")
        elif name not in floor:
            missing.append(name)
    assert not missing, missing
    assert len(_used_names()) > 40  # the scan found the code
