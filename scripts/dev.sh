#!/usr/bin/env bash
# Set up everything nodeagent needs on a fresh Debian 12 / Ubuntu machine, then
# either run the agent or run the whole test suite.
#
#   scripts/dev.sh run    install, then run `nodeagent --role compute` on this machine
#   scripts/dev.sh test   install everything the tests use (apt + pip), then run them all
#
# Needs root (or sudo) for apt-get. Python packages go into .venv in the checkout.
set -euo pipefail

mode=${1:-}
case "$mode" in
  run|test) ;;
  *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac
shift

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

# Debian packages. The run mode needs only Python; the tests use real
# components: Slurm + munge, Prometheus + promtool, node_exporter, the Debian
# packaging tool chain, shellcheck, systemd-analyze, systemd-nspawn (a booted
# Debian root with systemd as PID 1 for the service tests), the AWS CLI,
# envsubst.
run_pkgs=(python3 python3-venv python3-dev gcc ca-certificates)
test_pkgs=(
  slurmctld slurmd slurm-client munge slurmdbd mariadb-server-core mariadb-client-core
  prometheus prometheus-node-exporter
  debhelper dh-python dpkg-dev devscripts lintian debootstrap fakeroot man-db
  python3-pip python3-setuptools python3-wheel
  shellcheck systemd systemd-container awscli gettext-base openssl curl procps util-linux
)
pkgs=("${run_pkgs[@]}")
if [ "$mode" = test ]; then pkgs+=("${test_pkgs[@]}"); fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "dev.sh: installing Debian packages: ${missing[*]}" >&2
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "$mode" = test ]; then
  .venv/bin/python -m pip install -q -e '.[test]'
else
  .venv/bin/python -m pip install -q -e .
fi

if [ "$mode" = run ]; then
  # compute role with whatever this machine has: host metrics on :9100, and
  # GPU metrics on :9400 when an NVIDIA driver is present
  exec .venv/bin/nodeagent --role compute "$@"
fi

export PATH="$here/.venv/bin:$PATH"
.venv/bin/ruff check src/ tests/ bench/
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
