"""Remove from the vendored botocore (and boto3's resource models) every AWS
service the package does not use: about 20 MB of the 26 MB nodeagent
installs is botocore's data for 400-odd services.

    python3 trim-botocore.py VENDOR_DIR AWS_SERVICES_FILE

Kept: botocore's shared data files (endpoints, partitions, retry and default
configuration) and, for every service in AWS_SERVICES_FILE, all its API
versions' files. Fails, naming what is missing, when a kept service or shared
file is not there (a renamed service must not trim itself away silently).
debian/rules runs this after installing the wheels.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# what botocore reads for any client, whatever the service
SHARED = ("_retry.json", "endpoints.json", "partitions.json", "sdk-default-configuration.json")


def read_services(path: Path) -> list[str]:
    """Service names from the list: `<why> <service>` lines, # comments."""
    services = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: expected '<why> <service>', got {line!r}")
        services.append(fields[1])
    return services


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def trim(vendor: Path, keep: list[str]) -> tuple[int, int]:
    """(bytes before, bytes after) of botocore's and boto3's data."""
    botocore_data = vendor / "botocore" / "data"
    boto3_data = vendor / "boto3" / "data"
    missing = [str(botocore_data / name) for name in (*SHARED, *keep) if not (botocore_data / name).exists()]
    if missing:
        raise FileNotFoundError(f"not in the vendored botocore: {', '.join(missing)}")
    dirs = [d for d in (botocore_data, boto3_data) if d.is_dir()]
    before = sum(tree_size(d) for d in dirs)
    for data in dirs:
        for entry in data.iterdir():
            if entry.is_dir() and entry.name not in keep:
                shutil.rmtree(entry)
    return before, sum(tree_size(d) for d in dirs)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: trim-botocore.py VENDOR_DIR AWS_SERVICES_FILE", file=sys.stderr)
        return 2
    vendor, services = Path(argv[1]), Path(argv[2])
    try:
        keep = read_services(services)
        before, after = trim(vendor, keep)
    except (OSError, ValueError) as e:
        print(f"trim-botocore: error: {e}", file=sys.stderr)
        return 1
    print(f"trim-botocore: kept {', '.join(keep)}: AWS data {before // 1024} KiB -> {after // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
