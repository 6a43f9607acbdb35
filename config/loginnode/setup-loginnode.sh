#!/bin/bash
# Login node setup: nodeagent (login role: host metrics on :9100 and to
# CloudWatch), the users' packages of LOGIN_PACKAGES, then `nodeagent check`.
# Kept small so login nodes boot fast. Exits non-zero, naming the step, when
# any step fails.
#
#     setup-loginnode.sh [SOURCE]
#
# SOURCE: s3://BUCKET/PREFIX or a directory holding packages/ (default: the
# directory above config/). DRY_RUN=1 prints the plan and changes nothing.
# shellcheck source-path=SCRIPTDIR/..
set -Eeuo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=environment-variables.sh
. "$here/../environment-variables.sh"
# shellcheck source=lib/common.sh
. "$here/../lib/common.sh"
# shellcheck source=lib/components.sh
. "$here/../lib/components.sh"
BOOTSTRAP_STEP="login"
NODEAGENT_SOURCE=${1:-${NODEAGENT_SOURCE:-$(cd "$here/../.." && pwd)}}
trap 'die "failed at ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND"' ERR

main() {
    local started=$SECONDS
    require_root
    setup_logging
    if ! is_true "$ENABLE_LOGINNODE_SETUP"; then
        log "ENABLE_LOGINNODE_SETUP=$ENABLE_LOGINNODE_SETUP: nothing to do"
        return 0
    fi
    require_debian_family
    log "login node setup from $NODEAGENT_SOURCE"

    install_nodeagent login
    if [ -n "$LOGIN_PACKAGES" ]; then
        BOOTSTRAP_STEP=packages install_login_packages
    fi

    check_nodeagent login
    log "login node setup finished in $((SECONDS - started)) s"
}

main "$@"
