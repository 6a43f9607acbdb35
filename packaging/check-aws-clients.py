"""Run inside a chroot where the .deb is installed (chroot-test.sh): create a
client for every AWS service given, from the package's own boto3 and its
trimmed botocore, with a dummy region and credentials (no network is
touched), and check that the package carries no other service.

    python3 -IB check-aws-clients.py SERVICE...
"""

from __future__ import annotations

import sys

sys.path.insert(0, "/usr/lib/nodeagent")  # as the launcher /usr/bin/nodeagent does

import boto3
from botocore.exceptions import UnknownServiceError


def main(services: list[str]) -> int:
    # dummy credentials: creating a client then never looks for real ones (no
    # instance metadata call in a chroot without network)
    session = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="dummy", region_name="us-east-1"  # noqa: S106
    )
    for name in services:
        client = session.client(name)
        # the endpoint comes from the service's rule set and botocore's shared partition data
        if not client.meta.endpoint_url.startswith("https://"):
            print(f"{name}: unexpected endpoint {client.meta.endpoint_url}", file=sys.stderr)
            return 1
    carried = sorted(session.get_available_services())
    if carried != sorted(services):
        extra = sorted(set(carried) - set(services))
        print(f"the package carries {len(carried)} services, {len(extra)} unlisted ({', '.join(extra[:5])}...), "
              f"expected only {', '.join(sorted(services))}", file=sys.stderr)
        return 1
    try:
        session.client("s3")
    except UnknownServiceError:
        pass
    else:
        print("s3 still loads: botocore's data was not trimmed", file=sys.stderr)
        return 1
    print("AWS clients load:", " ".join(services))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
