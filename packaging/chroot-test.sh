#!/bin/bash
# Install the built .deb into a clean chroot of a Debian release whose python3
# is another minor version than the build machine's, with no network, then run
# `nodeagent --version` and `nodeagent check`, purge, and check that the purge
# left nothing behind.
#
#     packaging/chroot-test.sh [DEB]      (default: out/deb/nodeagent_*.deb)
#
# The chroot (debootstrap --variant=minbase --include=python3) is cached as a
# tarball in out/chroot-cache/; only its first creation uses the network.
# Needs root, debootstrap, unshare (util-linux).
# Environment: NODEAGENT_CHROOT_SUITE (default trixie: python 3.13; also
# jammy: 3.10, noble: 3.12, bookworm: 3.11; Ubuntu's archive key is fetched
# through Debian's ubuntu-keyring package),
# NODEAGENT_CHROOT_MIRROR, NODEAGENT_CHROOT_KEYRING (for another vendor's
# release, e.g. Ubuntu jammy: python 3.10), NODEAGENT_CHROOT_SCRIPT (a
# debootstrap script for a suite it does not know), NODEAGENT_CHROOT_CACHE,
# NODEAGENT_CHROOT_ROLES (roles to run `nodeagent check` for; default
# "login compute head").
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C.UTF-8

repo=$(cd "$(dirname "$0")/.." && pwd)
suite=${NODEAGENT_CHROOT_SUITE:-trixie}
cache=${NODEAGENT_CHROOT_CACHE:-$repo/out/chroot-cache}
case "$suite" in
    jammy|noble) ubuntu=1; default_mirror=http://archive.ubuntu.com/ubuntu ;;
    *) ubuntu=0; default_mirror=http://deb.debian.org/debian ;;
esac
mirror=${NODEAGENT_CHROOT_MIRROR:-$default_mirror}
roles=${NODEAGENT_CHROOT_ROLES:-login compute head}
# debootstrap's script for the suite, when it has none by that name (an
# Ubuntu release newer than the debootstrap: its scripts/gutsy serves)
script=()
if [ -n "${NODEAGENT_CHROOT_SCRIPT:-}" ]; then
    script=("$NODEAGENT_CHROOT_SCRIPT")
elif [ ! -e "/usr/share/debootstrap/scripts/$suite" ] && [ "$ubuntu" = 1 ]; then
    script=(/usr/share/debootstrap/scripts/gutsy)
fi
keyring=()
if [ -n "${NODEAGENT_CHROOT_KEYRING:-}" ]; then keyring=("--keyring=$NODEAGENT_CHROOT_KEYRING"); fi
deb=${1:-}
if [ -z "$deb" ]; then
    deb=$(find "$repo/out/deb" -maxdepth 1 -name 'nodeagent_*.deb' 2>/dev/null | sort -V | tail -1)
fi
if [ -z "${NODEAGENT_CHROOT_ONLY_CACHE:-}" ] && { [ -z "$deb" ] || [ ! -f "$deb" ]; }; then
    echo "chroot-test: no .deb (run packaging/build-deb.sh)" >&2
    exit 2
fi
[ "$(id -u)" = 0 ] || { echo "chroot-test: needs root (chroot, mount)" >&2; exit 2; }

t0=$(date +%s%N)
phase() {
    local tenths=$((($(date +%s%N) - t0) / 100000000))
    printf 'chroot-test: [%3d.%ds] %s\n' $((tenths / 10)) $((tenths % 10)) "$*"
}
fail() { printf 'chroot-test: FAILED: %s\n' "$*" >&2; exit 1; }

# Ubuntu's archive key, when no keyring was given: Debian (trixie and later)
# packages it as ubuntu-keyring, so apt in the cached Debian chroot fetches it,
# checked against Debian's archive signatures
ubuntu_keyring() {
    local dir=$cache/ubuntu-keyring tmp
    if [ ! -f "$dir/usr/share/keyrings/ubuntu-archive-keyring.gpg" ]; then
        NODEAGENT_CHROOT_SUITE=trixie NODEAGENT_CHROOT_ONLY_CACHE=1 "$0" >&2
        tmp=$(mktemp -d)
        mkdir "$tmp/root"
        tar -C "$tmp/root" -xzf "$cache/trixie-minbase-python3.tar.gz"
        cp /etc/resolv.conf "$tmp/root/etc/resolv.conf"
        chroot "$tmp/root" sh -c 'apt-get update -qq && cd /tmp && apt-get download -qq ubuntu-keyring' >&2 \
            || { rm -rf --one-file-system "$tmp"; fail "cannot fetch ubuntu-keyring through Debian"; }
        mkdir -p "$dir"
        dpkg-deb -x "$tmp"/root/tmp/ubuntu-keyring_*.deb "$dir"
        rm -rf --one-file-system "$tmp"
    fi
    printf '%s\n' "$dir/usr/share/keyrings/ubuntu-archive-keyring.gpg"
}

# 1. cached base system
tarball=$cache/$suite-minbase-python3.tar.gz
if [ ! -f "$tarball" ]; then
    if [ "$ubuntu" = 1 ] && [ "${#keyring[@]}" = 0 ]; then keyring=("--keyring=$(ubuntu_keyring)"); fi
    phase "debootstrap $suite from $mirror (once; cached as $tarball)"
    mkdir -p "$cache"
    build=$(mktemp -d "$cache/debootstrap.XXXXXX")
    debootstrap "${keyring[@]}" --variant=minbase --include=python3 "$suite" "$build/root" "$mirror" "${script[@]}" > "$cache/debootstrap-$suite.log" 2>&1 \
        || { rm -rf --one-file-system "$build"; fail "debootstrap failed, see $cache/debootstrap-$suite.log"; }
    tar -C "$build/root" -czf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf --one-file-system "$build"
fi

if [ -n "${NODEAGENT_CHROOT_ONLY_CACHE:-}" ]; then exit 0; fi

# 2. a fresh copy of it
work=$(mktemp -d "${TMPDIR:-/tmp}/nodeagent-chroot.XXXXXX")
root=$work/root
mounted=()
cleanup() {
    local m
    for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
    # never into a file system still mounted below the chroot
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
mkdir "$root"
tar -C "$root" -xzf "$tarball"
phase "unpacked $suite chroot"
in_root() { unshare --net chroot "$root" "$@"; }

# /proc and /sys for the collectors; /sys read-only
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
if mount -t sysfs -o ro sysfs "$root/sys" 2>/dev/null; then mounted+=("$root/sys"); fi

host_py=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
root_py=$(in_root python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
phase "python3 here: $host_py, in the chroot: $root_py"
[ "$host_py" != "$root_py" ] || echo "chroot-test: warning: the chroot's python3 is the same version as this machine's" >&2

snapshot() {
    # every path outside the pseudo file systems, with type, mode, owner and
    # size; files that installing any package changes are left out
    find "$root" -xdev \( -path "$root/proc" -o -path "$root/sys" -o -path "$root/dev" \
        -o -path "$root/tmp" -o -path "$root/var/lib/dpkg" -o -path "$root/var/log" \
        -o -path "$root/var/cache/debconf" \) -prune -o -printf '%P %y %m %U:%G %s\n' \
        | grep -v -E '^etc/(passwd|group|shadow|gshadow|subuid|subgid)-? ' | sort
}
cp "$deb" "$root/tmp/nodeagent.deb"
snapshot > "$work/before"

# 3. install offline (own network namespace: no interface but lo)
in_root dpkg -i /tmp/nodeagent.deb > "$work/dpkg-install.log" 2>&1 \
    || { cat "$work/dpkg-install.log" >&2; fail "dpkg -i"; }
phase "installed $(basename "$deb") with no network"
in_root getent passwd nodeagent >/dev/null || fail "no nodeagent user after install"
[ "$(in_root stat -c %U /var/lib/nodeagent/spool)" = nodeagent ] || fail "/var/lib/nodeagent/spool is not the nodeagent user's"
tag=$(echo "$root_py" | tr -d .)
pycs=$(find "$root/usr/lib/nodeagent" -name "*.cpython-$tag.pyc" | wc -l)
[ "$pycs" -gt 0 ] || fail "postinst compiled no bytecode for python $root_py"
phase "postinst compiled $pycs modules for python $root_py"

# 4. the program
version=$(in_root nodeagent --version) || fail "nodeagent --version"
want=$(dpkg-deb -f "$deb" Version)
[ "$version" = "nodeagent $want" ] || fail "nodeagent --version printed '$version', expected 'nodeagent $want'"
phase "nodeagent --version: $version"
in_root test -x /usr/sbin/nodeagent-slurm-health || fail "/usr/sbin/nodeagent-slurm-health is missing"
for role in $roles; do
    rc=0
    in_root nodeagent check --role "$role" > "$work/check-$role.txt" 2>&1 || rc=$?
    sed "s/^/    /" "$work/check-$role.txt"
    # 0 healthy, 1 unhealthy (a chroot has no GPU, Slurm or endpoints); any
    # other status (78 config, 2 usage, a traceback) is a packaging failure
    if [ "$rc" != 0 ] && [ "$rc" != 1 ]; then fail "nodeagent check --role $role exited $rc"; fi
    if grep -q Traceback "$work/check-$role.txt"; then fail "nodeagent check --role $role: traceback"; fi
    rc=0
    in_root nodeagent check --role "$role" --json > "$work/check-$role.json" 2>/dev/null || rc=$?
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["checks"], "no checks"' \
        "$work/check-$role.json" || fail "nodeagent check --role $role --json: not a JSON report"
    phase "nodeagent check --role $role: exit $rc ($(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(c["ok"] for c in d["checks"]), "of", len(d["checks"]), "passed")' "$work/check-$role.json"))"
done

# 5. purge
in_root dpkg --purge nodeagent > "$work/dpkg-purge.log" 2>&1 || { cat "$work/dpkg-purge.log" >&2; fail "dpkg --purge"; }
# One warning is expected and harmless: on merged-/usr systems whose other
# packages register their units under the other spelling (/lib/systemd/system
# on Ubuntu 22.04 and Debian 12), dpkg believes the package created
# /usr/lib/systemd/system and says it cannot remove it. Any other warning fails.
if grep -i -E 'warning|not empty' "$work/dpkg-purge.log" \
    | grep -v -F "directory '/usr/lib/systemd/system' not empty so not removed" | grep -q .; then
    cat "$work/dpkg-purge.log" >&2
    fail "dpkg --purge warned"
fi
snapshot > "$work/after"
if ! diff -u "$work/before" "$work/after" > "$work/purge.diff"; then
    cat "$work/purge.diff" >&2
    fail "the purge left the file system different from before the install"
fi
phase "purged; the file system is as before the install (the nodeagent system user stays, as Debian keeps system users)"
phase "PASS"
