#!/bin/bash
# Install the built .deb into a clean chroot of a Debian release whose python3
# is another minor version than the build machine's, with no network, then run
# `nodeagent --version`, `nodeagent check` and a client for each AWS service in
# packaging/aws-services.txt, purge, and check that the purge left nothing
# behind.
#
#     packaging/chroot-test.sh [DEB]      (default: out/deb/nodeagent_*.deb)
#
# The chroot (debootstrap --variant=minbase --include=python3) is cached as a
# tarball in out/chroot-cache/; only its first creation uses the network.
# Needs root, debootstrap, unshare (util-linux).
# Environment: NODEAGENT_CHROOT_SUITE (default trixie: python 3.13; also
# jammy: 3.10, noble: 3.12, bookworm: 3.11) and the others of chroot-lib.sh;
# NODEAGENT_CHROOT_ROLES (roles to run `nodeagent check` for; default
# "login compute head").
set -euo pipefail
# shellcheck source=SCRIPTDIR/chroot-lib.sh
. "$(dirname "$0")/chroot-lib.sh"

roles=${NODEAGENT_CHROOT_ROLES:-login compute head}
deb=${1:-}
if [ -z "$deb" ]; then
    deb=$(find "$repo/out/deb" -maxdepth 1 -name 'nodeagent_*.deb' 2>/dev/null | sort -V | tail -1)
fi
if [ -z "${NODEAGENT_CHROOT_ONLY_CACHE:-}" ] && { [ -z "$deb" ] || [ ! -f "$deb" ]; }; then
    echo "chroot-test: no .deb (run packaging/build-deb.sh)" >&2
    exit 2
fi
needs_root

# 1. cached base system
ensure_base
if [ -n "${NODEAGENT_CHROOT_ONLY_CACHE:-}" ]; then exit 0; fi

# 2. a fresh copy of it
new_root
phase "unpacked $suite chroot"

host_py=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
root_py=$(in_root python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
phase "python3 here: $host_py, in the chroot: $root_py"
[ "$host_py" != "$root_py" ] || echo "chroot-test: warning: the chroot's python3 is the same version as this machine's" >&2

cp "$deb" "$root/tmp/nodeagent.deb"
snapshot > "$work/before"

# 3. install offline (own network namespace: no interface but lo), with no
# terminal: dpkg must never need to ask
in_root dpkg -i /tmp/nodeagent.deb < /dev/null > "$work/dpkg-install.log" 2>&1 \
    || { cat "$work/dpkg-install.log" >&2; fail "dpkg -i"; }
phase "installed $(basename "$deb") with no network"
in_root getent passwd nodeagent >/dev/null || fail "no nodeagent user after install"
[ "$(in_root stat -c %U /var/lib/nodeagent/spool)" = nodeagent ] || fail "/var/lib/nodeagent/spool is not the nodeagent user's"
tag=$(echo "$root_py" | tr -d .)
pycs=$(find "$root/usr/lib/nodeagent" -name "*.cpython-$tag.pyc" | wc -l)
[ "$pycs" -gt 0 ] || fail "postinst compiled no bytecode for python $root_py"
phase "postinst compiled $pycs modules for python $root_py"
# the operator's config: written from the packaged defaults, not a conffile
cmp -s "$root/etc/nodeagent/config.yaml" "$root/usr/share/nodeagent/config.yaml" \
    || fail "postinst did not write /etc/nodeagent/config.yaml from /usr/share/nodeagent/config.yaml"
# shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
if in_root dpkg-query -W -f='${Conffiles}' nodeagent | grep -q .; then fail "the package has conffiles"; fi

# 4. the program
version=$(in_root nodeagent --version) || fail "nodeagent --version"
want=$(dpkg-deb -f "$deb" Version)
[ "$version" = "nodeagent $want" ] || fail "nodeagent --version printed '$version', expected 'nodeagent $want'"
phase "nodeagent --version: $version"
in_root test -x /usr/sbin/nodeagent-slurm-health || fail "/usr/sbin/nodeagent-slurm-health is missing"
# botocore's data is trimmed to packaging/aws-services.txt: a client for each
# service there still loads from the installed package, and no other does
mapfile -t services < <(awk '!/^[[:space:]]*(#|$)/ {print $2}' "$repo/packaging/aws-services.txt")
cp "$repo/packaging/check-aws-clients.py" "$root/tmp/"
in_root python3 -IB /tmp/check-aws-clients.py "${services[@]}" > "$work/aws-clients.txt" 2>&1 \
    || { cat "$work/aws-clients.txt" >&2; fail "AWS clients from the installed package"; }
phase "$(cat "$work/aws-clients.txt")"
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
in_root dpkg --purge nodeagent < /dev/null > "$work/dpkg-purge.log" 2>&1 || { cat "$work/dpkg-purge.log" >&2; fail "dpkg --purge"; }
check_purge_log "$work/dpkg-purge.log"
snapshot > "$work/after"
if ! diff -u "$work/before" "$work/after" > "$work/purge.diff"; then
    cat "$work/purge.diff" >&2
    fail "the purge left the file system different from before the install"
fi
phase "purged; the file system is as before the install (the nodeagent system user stays, as Debian keeps system users)"
phase "PASS"
