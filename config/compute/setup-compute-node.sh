#!/bin/bash
# Compute node setup: nodeagent (compute role: host metrics on :9100, GPU
# metrics on :9400), then the optional components of environment-variables.sh
# (EFA, NCCL, Docker + NVIDIA Container Toolkit, Enroot + Pyxis) as parallel
# jobs, then `nodeagent check`. Exits non-zero, naming the step, when any
# step fails, so that ParallelCluster marks the node failed.
#
#     setup-compute-node.sh [SOURCE]
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
BOOTSTRAP_STEP="compute"
NODEAGENT_SOURCE=${1:-${NODEAGENT_SOURCE:-$(cd "$here/../.." && pwd)}}
trap 'die "failed at ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND"' ERR

main() {
    local started=$SECONDS
    require_root
    setup_logging
    if ! is_true "$ENABLE_COMPUTE_SETUP"; then
        log "ENABLE_COMPUTE_SETUP=$ENABLE_COMPUTE_SETUP: nothing to do"
        return 0
    fi
    require_debian_family
    log "compute node setup from $NODEAGENT_SOURCE"

    install_nodeagent compute

    # independent components: in parallel, every failure reported
    if is_true "$ENABLE_EFA_INSTALLER"; then job_start efa install_efa; fi
    if is_true "$ENABLE_NCCL"; then job_start nccl install_nccl; fi
    if is_true "$ENABLE_DOCKER"; then job_start docker install_docker; fi
    if is_true "$ENABLE_PYXIS"; then job_start enroot install_enroot; fi
    jobs_wait
    # Pyxis is built against Enroot's runtime being there
    if is_true "$ENABLE_PYXIS"; then
        BOOTSTRAP_STEP=pyxis install_pyxis
    fi

    check_nodeagent compute
    log "compute node setup finished in $((SECONDS - started)) s"
}

main "$@"
