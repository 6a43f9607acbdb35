"""Settings of the Slurm group (`slurm:` in the config file)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SlurmSettings:
    pass
