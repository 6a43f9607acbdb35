#!/bin/bash
# Head node setup: nodeagent (head role: Slurm metrics on :9341 and to
# CloudWatch, host metrics on :9100), then, per environment-variables.sh,
# Prometheus scraping the cluster's nodeagents and the Pyxis plugin stack
# entry (Slurm's etc is shared with every node), then `nodeagent check`.
# Exits non-zero, naming the step, when any step fails.
#
#     setup-headnode.sh [SOURCE]
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
BOOTSTRAP_STEP="head"
NODEAGENT_SOURCE=${1:-${NODEAGENT_SOURCE:-$(cd "$here/../.." && pwd)}}
trap 'die "failed at ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND"' ERR

main() {
    local started=$SECONDS
    require_root
    setup_logging
    if ! is_true "$ENABLE_HEADNODE_SETUP"; then
        log "ENABLE_HEADNODE_SETUP=$ENABLE_HEADNODE_SETUP: nothing to do"
        return 0
    fi
    require_debian_family
    log "head node setup from $NODEAGENT_SOURCE"

    install_nodeagent head

    # Prometheus needs nodeagent (it writes the scrape config)
    if is_true "$ENABLE_PROMETHEUS"; then job_start prometheus install_prometheus; fi
    if is_true "$ENABLE_PYXIS"; then job_start pyxis-plugstack configure_pyxis_plugstack; fi
    jobs_wait

    check_nodeagent head
    log "head node setup finished in $((SECONDS - started)) s"
}

main "$@"
