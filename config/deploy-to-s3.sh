#!/bin/bash
# Upload the bootstrap to S3, where the cluster template points:
#
#     config/ -> s3://$S3_BUCKET/$S3_PREFIX/config/      (aws s3 sync --delete)
#     .deb    -> s3://$S3_BUCKET/$S3_PREFIX/packages/    (aws s3 sync; older
#                versions of the same architecture are removed)
#
#     config/deploy-to-s3.sh [--deb PATH] [--dry-run]
#
# Settings come from environment-variables.sh (S3_BUCKET, S3_PREFIX,
# AWS_REGION); AWS_ENDPOINT_URL, when set, is passed as --endpoint-url (VPC
# endpoints, tests). The .deb defaults to the newest out/deb/nodeagent_*.deb
# of packaging/build-deb.sh.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=environment-variables.sh
. "$here/environment-variables.sh"

deb=""
dry_run=()
while [ $# -gt 0 ]; do
    case "$1" in
        --deb) deb=${2:?--deb needs a path}; shift 2 ;;
        --dry-run) dry_run=(--dryrun); shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "deploy-to-s3: unknown argument $1" >&2; exit 64 ;;
    esac
done
if [ -z "$deb" ]; then
    deb=$(find "$here/../out/deb" -maxdepth 1 -name 'nodeagent_*.deb' 2>/dev/null | sort -V | tail -n 1)
fi
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
    echo "deploy-to-s3: no .deb: build one with packaging/build-deb.sh or pass --deb PATH" >&2
    exit 1
fi
case "$(basename "$deb")" in
    nodeagent_*_*.deb) ;;
    *) echo "deploy-to-s3: $deb is not named nodeagent_VERSION_ARCH.deb" >&2; exit 1 ;;
esac
arch=${deb##*_}
arch=${arch%.deb}

aws=(aws --region "$AWS_REGION")
if [ -n "${AWS_ENDPOINT_URL:-}" ]; then aws+=(--endpoint-url "$AWS_ENDPOINT_URL"); fi
base=s3://$S3_BUCKET/$S3_PREFIX

echo "deploy-to-s3: $here/ -> $base/config/"
"${aws[@]}" s3 sync "${dry_run[@]}" --delete --only-show-errors \
    --exclude '*.swp' --exclude '*~' --exclude '__pycache__/*' "$here/" "$base/config/"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$deb" "$stage/"
echo "deploy-to-s3: $(basename "$deb") -> $base/packages/"
"${aws[@]}" s3 sync "${dry_run[@]}" --delete --only-show-errors \
    --exclude '*' --include "nodeagent_*_${arch}.deb" "$stage/" "$base/packages/"

cat <<EOT
deploy-to-s3: done. The cluster template runs:
    Script: $base/config/on-node-configured.sh
    Args:   [$base]
EOT
