"""Settings of the GPU group (`gpu:` in the config file)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuSettings:
    pass
