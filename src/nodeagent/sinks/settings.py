"""Settings of the CloudWatch sink (`cloudwatch:` in the config file)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CloudWatchSettings:
    pass
