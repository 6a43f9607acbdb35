#!/bin/bash
# Upgrades with no terminal keep the operator's config: in clean chroots with
# no network (chroot-lib.sh), every dpkg run reads /dev/null, as in an
# unattended upgrade or a bootstrap script, so a conffile prompt fails it.
#
#     packaging/upgrade-test.sh OLD_DEB [NEW_DEB]
#
# OLD_DEB is a package of 0.1.0, which shipped /etc/nodeagent/config.yaml as
# a conffile; NEW_DEB (default out/deb/nodeagent_*.deb) ships its defaults in
# /usr/share/nodeagent/config.yaml. NEWER is NEW_DEB repacked with a higher
# version and a changed default, OLD_CHANGED the same for OLD_DEB. Scenarios:
#
#   old-configured  OLD, `nodeagent install --config`, upgrade to NEW, to
#                   NEWER: no prompt, the operator's file unchanged; remove:
#                   it is still there (0.1.0's default, which install set
#                   aside, does not come back); purge: nothing left
#   old-untouched   OLD, upgrade to NEW: the unchanged 0.1.0 conffile gives
#                   way to NEW's default; purge: nothing left
#   new-configured  NEW, `nodeagent install --config` and a hand edit,
#                   upgrade to NEWER, remove, purge: as old-configured
#   old-scheme      OLD, `nodeagent install --config`, upgrade to OLD_CHANGED:
#                   must stop at the conffile prompt, unpacked (iU: the
#                   failure the others guard against, shown to be caught)
#
# Needs root, debootstrap, unshare. Environment: as chroot-lib.sh.
set -euo pipefail
# shellcheck source=SCRIPTDIR/chroot-lib.sh
. "$(dirname "$0")/chroot-lib.sh"

old=${1:?usage: upgrade-test.sh OLD_DEB [NEW_DEB]}
new=${2:-$(find "$repo/out/deb" -maxdepth 1 -name 'nodeagent_*.deb' 2>/dev/null | sort -V | tail -1)}
[ -f "$old" ] || fail "no $old"
if [ -z "$new" ] || [ ! -f "$new" ]; then fail "no new .deb (run packaging/build-deb.sh)"; fi
needs_root

CONFIG=etc/nodeagent/config.yaml
DEFAULTS=usr/share/nodeagent/config.yaml
OPERATOR='log:
  level: debug
collectors:
  timeout: 7
'
scratch=$(mktemp -d "${TMPDIR:-/tmp}/nodeagent-upgrade.XXXXXX")
works+=("$scratch")

# repack DEB OUT VERSION PATH: DEB with another version and one more comment
# line at the end of PATH (the packaged default)
repack() {
    local dir=$scratch/repack
    rm -rf "$dir"
    dpkg-deb -R "$1" "$dir"
    sed -i "s/^Version: .*/Version: $3/" "$dir/DEBIAN/control"
    printf '# a default changed in %s\n' "$3" >> "$dir/$4"
    (cd "$dir" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
    dpkg-deb -Zgzip -z1 --root-owner-group -b "$dir" "$2" > /dev/null
    rm -rf "$dir"
}
newer=$scratch/newer.deb
old_changed=$scratch/old-changed.deb
repack "$new" "$newer" "$(dpkg-deb -f "$new" Version)+upgradetest1" "$DEFAULTS"
repack "$old" "$old_changed" "$(dpkg-deb -f "$old" Version)+upgradetest1" "$CONFIG"
phase "repacked NEWER and OLD_CHANGED with a changed default"

# a fresh chroot with the three packages and the operator's config in /tmp;
# systemctl is a stub (a chroot runs no systemd, and `nodeagent install`
# enables its unit with it): it is there before and after
scenario() {
    name=$1
    new_root
    cp "$old" "$root/tmp/old.deb"
    cp "$new" "$root/tmp/new.deb"
    cp "$newer" "$root/tmp/newer.deb"
    cp "$old_changed" "$root/tmp/old-changed.deb"
    printf '%s' "$OPERATOR" > "$root/tmp/operator.yaml"
    printf '#!/bin/sh\nexit 0\n' > "$root/usr/bin/systemctl"
    chmod 0755 "$root/usr/bin/systemctl"
    snapshot > "$work/before"
    phase "$name: fresh $suite chroot"
}

# dpkg ACTION DEB|PACKAGE: with no terminal; fails the test on a non-zero exit
dpkg_run() {
    local log
    log=$work/dpkg-$1-$(basename "$2").log
    if ! in_root dpkg "$1" "$2" < /dev/null > "$log" 2>&1; then
        cat "$log" >&2
        fail "$name: dpkg $1 $2 failed"
    fi
    if grep -q "Configuration file '/$CONFIG'" "$log"; then
        cat "$log" >&2
        fail "$name: dpkg $1 $2 asked about /$CONFIG"
    fi
    last_log=$log
}

status_is() {
    local got
    # shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
    got=$(in_root dpkg-query -W -f='${Status}' nodeagent)
    [ "$got" = "$1" ] || fail "$name: package status '$got', expected '$1'"
}

same_file() {
    cmp -s "$1" "$2" || { diff -u "$1" "$2" >&2 || true; fail "$name: $3"; }
}

# after an upgrade to the new scheme: no conffile but obsolete ones, nothing
# left over from the transition
upgraded() {
    status_is "install ok installed"
    # shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
    if in_root dpkg-query -W -f='${Conffiles}\n' nodeagent | grep -v -e '^$' -e ' obsolete$' | grep -q .; then
        fail "$name: the package has conffiles"
    fi
    local left
    left=$(find "$root/etc/nodeagent" -name 'config.yaml.dpkg-*')
    [ -z "$left" ] || fail "$name: left over: $left"
    same_file "$root/$DEFAULTS" "$root/tmp/$1.defaults" "/$DEFAULTS is not the package's"
}

install_config() {
    in_root nodeagent install --role compute --config /tmp/operator.yaml > "$work/install.log" 2>&1 \
        || { cat "$work/install.log" >&2; fail "$name: nodeagent install --config"; }
    same_file "$root/tmp/operator.yaml" "$root/$CONFIG" "nodeagent install did not write /$CONFIG"
}

remove_keeps_config_and_purge_cleans() {
    dpkg_run --remove nodeagent
    status_is "deinstall ok config-files"
    same_file "$root/tmp/operator.yaml" "$root/$CONFIG" \
        "after the removal /$CONFIG is not the operator's (something older came back)"
    phase "$name: removed; /$CONFIG is still the operator's"
    dpkg_run --purge nodeagent
    check_purge_log "$last_log"
    snapshot > "$work/after"
    if ! diff -u "$work/before" "$work/after" > "$work/purge.diff"; then
        cat "$work/purge.diff" >&2
        fail "$name: the purge left the file system different from before the install"
    fi
    phase "$name: purged; the file system is as before"
}

# the packaged defaults of NEW and NEWER, to compare with what is installed
defaults_of() {
    dpkg-deb --fsys-tarfile "$1" | tar -xOf - "./$DEFAULTS"
}

ensure_base

scenario old-configured
dpkg_run --install /tmp/old.deb
install_config
phase "$name: 0.1.0 installed, configured with nodeagent install --config"
defaults_of "$new" > "$root/tmp/new.defaults"
defaults_of "$newer" > "$root/tmp/newer.defaults"
dpkg_run --install /tmp/new.deb
upgraded new
same_file "$root/tmp/operator.yaml" "$root/$CONFIG" "the upgrade from 0.1.0 changed /$CONFIG"
# shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
phase "$name: dpkg's conffile record now:$(in_root dpkg-query -W -f='${Conffiles}' nodeagent | tr '\n' ' ')"
phase "$name: upgraded to $(dpkg-deb -f "$new" Version) with no prompt; /$CONFIG kept"
dpkg_run --install /tmp/newer.deb
upgraded newer
same_file "$root/tmp/operator.yaml" "$root/$CONFIG" "the upgrade to a changed default changed /$CONFIG"
phase "$name: upgraded to $(dpkg-deb -f "$newer" Version) (changed default) with no prompt; /$CONFIG kept"
remove_keeps_config_and_purge_cleans

scenario old-untouched
dpkg_run --install /tmp/old.deb
defaults_of "$new" > "$root/tmp/new.defaults"
dpkg_run --install /tmp/new.deb
upgraded new
same_file "$root/tmp/new.defaults" "$root/$CONFIG" "the unchanged 0.1.0 conffile was not replaced by the new default"
phase "$name: the unchanged 0.1.0 conffile gave way to the new default"
dpkg_run --purge nodeagent
check_purge_log "$last_log"
snapshot > "$work/after"
diff -u "$work/before" "$work/after" >&2 || fail "$name: the purge left the file system different"
phase "$name: purged; the file system is as before"

scenario new-configured
dpkg_run --install /tmp/new.deb
defaults_of "$new" > "$root/tmp/new.defaults"
defaults_of "$newer" > "$root/tmp/newer.defaults"
upgraded new
same_file "$root/tmp/new.defaults" "$root/$CONFIG" "postinst did not write /$CONFIG from the defaults"
install_config
printf '# edited by hand\n' >> "$root/$CONFIG"
cp "$root/$CONFIG" "$root/tmp/operator.yaml"
dpkg_run --install /tmp/newer.deb
upgraded newer
same_file "$root/tmp/operator.yaml" "$root/$CONFIG" "the upgrade to a changed default changed /$CONFIG"
phase "$name: upgraded to a changed default with no prompt; /$CONFIG kept"
remove_keeps_config_and_purge_cleans

scenario old-scheme
dpkg_run --install /tmp/old.deb
install_config
rc=0
in_root dpkg --install /tmp/old-changed.deb < /dev/null > "$work/old-scheme.log" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "$name: upgrading a changed conffile with no terminal succeeded; the test would not see the prompt"
grep -q "end of file on stdin at conffile prompt" "$work/old-scheme.log" \
    || { cat "$work/old-scheme.log" >&2; fail "$name: dpkg failed otherwise than at the conffile prompt"; }
status_is "install ok unpacked"
phase "$name: as expected, the conffile scheme stops at the prompt (exit $rc, status iU)"

phase "PASS"
