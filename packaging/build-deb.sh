#!/bin/bash
# Build the nodeagent .deb. This is the one documented build command:
#
#     packaging/build-deb.sh
#
# It writes out/deb/nodeagent_<version>_<arch>.deb (out/ is not tracked) and
# fails when lintian reports an error. Steps:
#   1. download the wheels pinned, with their hashes, in
#      packaging/requirements.lock into out/wheelhouse/<machine>/ (the only
#      step that uses the network; kept between runs), and check that the lock
#      holds every dependency for Python 3.10 to 3.13 (check-lock.py);
#   2. stage a source tree in out/deb-build/: the project, packaging/debian/
#      as debian/, the wheelhouse;
#   3. dpkg-buildpackage -b (debhelper; debian/rules installs from the
#      wheelhouse, offline, and trims botocore's data to the services in
#      packaging/aws-services.txt);
#   4. lintian --fail-on error.
#
# Environment: NODEAGENT_DEB_OUT (output directory), NODEAGENT_SKIP_LINTIAN=1.
# Needs: dpkg-dev, debhelper, python3-pip, python3-setuptools, python3-wheel,
# lintian.
set -euo pipefail

# pyenv and virtualenv shims on PATH break dpkg-buildpackage and pybuild:
# Debian tools run with the system's own PATH and python3
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH VIRTUAL_ENV PYTHONHOME

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${NODEAGENT_DEB_OUT:-$repo/out/deb}
work=$repo/out/deb-build
started=$(date +%s)

log() { printf 'build-deb: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$repo/pyproject.toml")
deb_version=$(dpkg-parsechangelog -l "$repo/packaging/debian/changelog" -S Version)
[ "$version" = "$deb_version" ] || \
    die "pyproject.toml says $version but packaging/debian/changelog says $deb_version: add a changelog entry (dch -v $version)"

arch=$(dpkg --print-architecture)
case "$arch" in
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) die "no manylinux wheels for architecture $arch" ;;
esac

# 1. wheels (hash-checked; pip skips files already there)
wheelhouse=$repo/out/wheelhouse/$machine
mkdir -p "$wheelhouse"
log "wheels for $machine -> $wheelhouse"
python3 -m pip --isolated --disable-pip-version-check download --quiet --no-deps --require-hashes \
    --only-binary=:all: --implementation cp --python-version 3.11 \
    --platform "manylinux2014_$machine" --platform "manylinux_2_17_$machine" \
    --platform "manylinux_2_28_$machine" \
    -d "$wheelhouse" -r "$repo/packaging/requirements.lock"
python3 "$repo/packaging/check-lock.py" "$repo/packaging/requirements.lock" "$wheelhouse" \
    || die "packaging/requirements.lock is not closed over its dependencies: add the pins to packaging/lock-deps.sh"

# 2. staged source tree
src=$work/nodeagent-$version
rm -rf "$work"
mkdir -p "$src"
tar -C "$repo" --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
    -cf - pyproject.toml README.md src systemd docs/metrics.md config/nodeagent.example.yaml config/grafana config/prometheus \
    | tar -C "$src" -xf -
cp -a "$repo/packaging/debian" "$src/debian"
cp "$repo/packaging/requirements.lock" "$src/requirements.lock"
cp "$repo/packaging/aws-services.txt" "$repo/packaging/trim-botocore.py" "$src/"
mkdir "$src/wheelhouse"
cp "$wheelhouse"/*.whl "$src/wheelhouse/"

# 3. build
log "dpkg-buildpackage in $src"
(cd "$src" && dpkg-buildpackage -b -us -uc) > "$work/build.log" 2>&1 || {
    tail -40 "$work/build.log" >&2
    die "dpkg-buildpackage failed; full log: $work/build.log"
}
deb=$work/nodeagent_${version}_${arch}.deb
[ -f "$deb" ] || die "dpkg-buildpackage did not produce $deb"
mkdir -p "$out"
rm -f "$out"/nodeagent_*.deb
cp "$deb" "$out/"
deb=$out/$(basename "$deb")
built=$(date +%s)

# 4. lintian
if [ "${NODEAGENT_SKIP_LINTIAN:-0}" != 1 ]; then
    log "lintian"
    lintian --fail-on error --info "$deb" >&2 || die "lintian reported errors"
fi
log "built $deb ($(du -k "$deb" | cut -f1) KiB) in $((built - started)) s, lintian $(($(date +%s) - built)) s"
echo "$deb"
