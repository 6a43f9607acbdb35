# shellcheck shell=bash
# Shared by chroot-test.sh and upgrade-test.sh (sourced, not run): a cached
# minimal system of a Debian or Ubuntu release with python3, fresh copies of
# it to install .debs into with no network, and a listing of a copy's files.
#
# Environment: NODEAGENT_CHROOT_SUITE (default trixie: python 3.13; also
# jammy: 3.10, noble: 3.12, bookworm: 3.11; Ubuntu's archive key is fetched
# through Debian's ubuntu-keyring package), NODEAGENT_CHROOT_MIRROR,
# NODEAGENT_CHROOT_KEYRING (for another vendor's release),
# NODEAGENT_CHROOT_SCRIPT (a debootstrap script for a suite it does not know),
# NODEAGENT_CHROOT_CACHE.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C.UTF-8

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
suite=${NODEAGENT_CHROOT_SUITE:-trixie}
cache=${NODEAGENT_CHROOT_CACHE:-$repo/out/chroot-cache}
case "$suite" in
    jammy|noble) ubuntu=1; default_mirror=http://archive.ubuntu.com/ubuntu ;;
    *) ubuntu=0; default_mirror=http://deb.debian.org/debian ;;
esac
mirror=${NODEAGENT_CHROOT_MIRROR:-$default_mirror}
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

t0=$(date +%s%N)
phase() {
    local tenths=$((($(date +%s%N) - t0) / 100000000))
    printf '%s: [%3d.%ds] %s\n' "$(basename "$0" .sh)" $((tenths / 10)) $((tenths % 10)) "$*"
}
fail() { printf '%s: FAILED: %s\n' "$(basename "$0" .sh)" "$*" >&2; exit 1; }

needs_root() {
    [ "$(id -u)" = 0 ] || { echo "$(basename "$0"): needs root (chroot, mount)" >&2; exit 2; }
}

# Ubuntu's archive key, when no keyring was given: Debian (trixie and later)
# packages it as ubuntu-keyring, so apt in the cached Debian chroot fetches it,
# checked against Debian's archive signatures
ubuntu_keyring() {
    local dir=$cache/ubuntu-keyring tmp
    if [ ! -f "$dir/usr/share/keyrings/ubuntu-archive-keyring.gpg" ]; then
        NODEAGENT_CHROOT_SUITE=trixie NODEAGENT_CHROOT_ONLY_CACHE=1 "$repo/packaging/chroot-test.sh" >&2
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

# The cached base system (debootstrap minbase + python3), made once.
tarball=$cache/$suite-minbase-python3.tar.gz
ensure_base() {
    if [ -f "$tarball" ]; then return; fi
    if [ "$ubuntu" = 1 ] && [ "${#keyring[@]}" = 0 ]; then keyring=("--keyring=$(ubuntu_keyring)"); fi
    phase "debootstrap $suite from $mirror (once; cached as $tarball)"
    mkdir -p "$cache"
    local build
    build=$(mktemp -d "$cache/debootstrap.XXXXXX")
    debootstrap "${keyring[@]}" --variant=minbase --include=python3 "$suite" "$build/root" "$mirror" "${script[@]}" \
        > "$cache/debootstrap-$suite.log" 2>&1 \
        || { rm -rf --one-file-system "$build"; fail "debootstrap failed, see $cache/debootstrap-$suite.log"; }
    tar -C "$build/root" -czf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf --one-file-system "$build"
}

# new_root: a fresh copy of the base system in $root, with /proc and a
# read-only /sys; $work is its scratch directory. Everything is unmounted and
# removed at exit.
works=()
mounted=()
cleanup() {
    local m w
    for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
    # never into a file system still mounted below the chroot
    for w in "${works[@]}"; do rm -rf --one-file-system "$w"; done
}
trap cleanup EXIT
new_root() {
    ensure_base
    work=$(mktemp -d "${TMPDIR:-/tmp}/nodeagent-chroot.XXXXXX")
    works+=("$work")
    root=$work/root
    mkdir "$root"
    tar -C "$root" -xzf "$tarball"
    mount -t proc proc "$root/proc" && mounted+=("$root/proc")
    if mount -t sysfs -o ro sysfs "$root/sys" 2>/dev/null; then mounted+=("$root/sys"); fi
}

# a command in the chroot, in its own network namespace (no interface but lo)
in_root() { unshare --net chroot "$root" "$@"; }

# every path outside the pseudo file systems, with type, mode, owner and
# size; files that installing any package changes are left out
snapshot() {
    find "$root" -xdev \( -path "$root/proc" -o -path "$root/sys" -o -path "$root/dev" \
        -o -path "$root/tmp" -o -path "$root/var/lib/dpkg" -o -path "$root/var/log" \
        -o -path "$root/var/cache/debconf" \) -prune -o -printf '%P %y %m %U:%G %s\n' \
        | grep -v -E '^etc/(passwd|group|shadow|gshadow|subuid|subgid)-? ' | sort
}

# dpkg --purge prints one expected warning on merged-/usr systems whose other
# packages register their units under the other spelling (/lib/systemd/system
# on Ubuntu 22.04 and Debian 12): dpkg believes the package created
# /usr/lib/systemd/system and says it cannot remove it. Any other warning fails.
check_purge_log() {
    if grep -i -E 'warning|not empty' "$1" \
        | grep -v -F "directory '/usr/lib/systemd/system' not empty so not removed" | grep -q .; then
        cat "$1" >&2
        fail "dpkg --purge warned"
    fi
}
