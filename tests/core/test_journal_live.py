"""Journal priorities against the real systemd-journald (see
journald_scenario.py): every line nodeagent writes reaches the journal with
the priority of its level, and `journalctl -p warning` shows exactly the
warnings and errors: the fatal exit-78 line, reload_rejected, listen_failed,
sd_notify_failed; nothing at info or debug."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nodeagent.log import PRIORITIES

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from journald_scenario import journald_binary  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespace)"),
    pytest.mark.skipif(journald_binary() is None or shutil.which("journalctl") is None
                       or shutil.which("unshare") is None, reason="needs systemd-journald, journalctl, unshare"),
]  # fmt: skip


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def expected_priority(message: str) -> int:
    """A structured line's level decides; any other stderr line is an error."""
    if message.startswith("{"):
        return PRIORITIES[json.loads(message)["level"]]
    return 3


def test_every_line_has_its_level_s_priority(tmp_path: Path) -> None:
    r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                        str(HERE / "journald_scenario.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=240)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    rc = json.loads((tmp_path / "rc.json").read_text())
    assert rc["bad_config"] == 78 and rc["daemon"] == 0 and rc["listen_failed"] == 1 and rc["check"] in (0, 1)
    assert rc["levels"] == 0

    everything = entries(tmp_path / "all.json")
    logged = [e for e in everything if e["MESSAGE"].startswith("{") or "nodeagent:" in e["MESSAGE"]]
    by_priority = {int(e["PRIORITY"]) for e in logged}
    assert by_priority >= {3, 4, 6, 7}, by_priority
    wrong = [(e["PRIORITY"], e["MESSAGE"][:120]) for e in logged
             if int(e["PRIORITY"]) != expected_priority(e["MESSAGE"])]  # fmt: skip
    assert wrong == []
    assert not [e["MESSAGE"] for e in everything if e["MESSAGE"].startswith("<")]  # journald took every prefix

    def events(es: list[dict[str, Any]]) -> list[str]:
        return [json.loads(e["MESSAGE"])["event"] if e["MESSAGE"].startswith("{") else e["MESSAGE"] for e in es]

    warnings = entries(tmp_path / "warning.json")
    assert sorted(events(warnings)) == sorted(events([e for e in logged if expected_priority(e["MESSAGE"]) <= 4]))
    got = events(warnings)
    assert {"reload_rejected", "listen_failed", "sd_notify_failed"} <= set(got), got
    assert any(m.startswith("nodeagent: ") and "listen" in m for m in got), got  # the exit-78 line
    assert "agent_started" not in got
    levels = {event: int(e["PRIORITY"]) for e, event in zip(logged, events(logged), strict=True)
              if event.startswith("level_")}  # fmt: skip
    assert levels == {"level_debug": 7, "level_info": 6, "level_warning": 4, "level_error": 3}
