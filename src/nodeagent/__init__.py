"""nodeagent: one monitoring agent for GPU cluster nodes."""

__version__ = "0.1.1"
