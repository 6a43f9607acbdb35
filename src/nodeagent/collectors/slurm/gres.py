"""Counting GPUs in Slurm's GRES and TRES strings.

Forms seen: sinfo Gres `gpu:4`, `gpu:a100:8(S:0-1)`, `gpu:a100:4,gpu:v100:2`,
`(null)`; sinfo GresUsed `gpu:2`, `gpu:a100:2(IDX:0-1,3)`, `gpu:0(IDX:N/A)`;
squeue tres-per-node/-job/-task `gres:gpu:2` (22.05), `gres/gpu:2` (23.x),
`gres/gpu:a100=2`, `N/A`. Commas inside parentheses (index lists) are not
separators.
"""

from __future__ import annotations

_SUFFIX = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    items: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def _count(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    mult = 1
    if text[-1].upper() in _SUFFIX:
        mult = _SUFFIX[text[-1].upper()]
        text = text[:-1]
    if not text.isdigit():
        return None
    return int(text) * mult


def gpu_count(spec: str, name: str = "gpu") -> int:
    """Number of `name` GRES in a GRES/TRES string (0 when none). Raises
    ValueError when a `name` item is present but its count cannot be read."""
    spec = spec.strip()
    if not spec or spec in ("(null)", "N/A", "None"):
        return 0
    total = 0
    for item in split_top_level(spec):
        item = item.split("(", 1)[0]
        for prefix in ("gres:", "gres/"):
            if item.startswith(prefix):
                item = item[len(prefix) :]
                break
        # gres/gpu:a100=2 (TRES style) -> gpu:a100:2
        item = item.replace("=", ":")
        parts = item.split(":")
        if parts[0] != name:
            continue
        if len(parts) == 1:  # "gpu" alone means one
            total += 1
            continue
        count = _count(parts[-1])
        if count is None:
            if len(parts) == 2:  # "gpu:a100": a type without a count means one
                total += 1
                continue
            raise ValueError(f"cannot read the {name} count in {spec!r}")
        total += count
    return total
