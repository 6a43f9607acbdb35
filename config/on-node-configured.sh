#!/bin/bash
# ParallelCluster CustomActions.OnNodeConfigured script for every node type.
#
#     on-node-configured.sh s3://BUCKET/PREFIX     (the cluster template's Args)
#     on-node-configured.sh /local/dir             (holding config/ and packages/)
#
# ParallelCluster downloads this one file and runs it as root; it fetches the
# rest of config/ from the same place, reads the node type (cfn_node_type in
# /etc/parallelcluster/cfnconfig, else cluster.node_type in /etc/chef/dna.json)
# and runs headnode/setup-headnode.sh, compute/setup-compute-node.sh or
# loginnode/setup-loginnode.sh. A non-zero exit marks the node failed.
# DRY_RUN=1 prints the plan and changes nothing.
# shellcheck source-path=SCRIPTDIR
set -Eeuo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_arg=${1:-${NODEAGENT_SOURCE:-}}
: "${NODEAGENT_BOOTSTRAP_DIR:=/opt/nodeagent/bootstrap}"

if [ -f "$here/lib/common.sh" ]; then
    # run from a complete copy of config/
    config_dir=$here
    source_arg=${source_arg:-$(cd "$here/.." && pwd)}
else
    if [ -z "$source_arg" ]; then
        echo "usage: $0 s3://BUCKET/PREFIX | DIRECTORY" >&2
        exit 64
    fi
    config_dir=$NODEAGENT_BOOTSTRAP_DIR/config
    case "$source_arg" in
        s3://*)
            if [ "${DRY_RUN:-0}" = 1 ]; then
                echo "[dry-run] aws s3 sync ${source_arg%/}/config/ $config_dir/, then run the node type's setup script"
                exit 0
            fi
            mkdir -p "$config_dir"
            aws s3 sync --only-show-errors "${source_arg%/}/config/" "$config_dir/" \
                || { echo "on-node-configured: cannot download ${source_arg%/}/config/" >&2; exit 1; }
            ;;
        *) config_dir=$source_arg/config ;;
    esac
fi

# shellcheck source=environment-variables.sh
. "$config_dir/environment-variables.sh"
# shellcheck source=lib/common.sh
. "$config_dir/lib/common.sh"
BOOTSTRAP_STEP=on-node-configured
trap 'die "failed at ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND"' ERR
require_root
setup_logging

if ! type=$(node_type); then
    die "cannot tell the node type: no cfn_node_type in $NODEAGENT_CFNCONFIG and no cluster.node_type in $NODEAGENT_DNA_JSON"
fi
case "$type" in
    HeadNode) script=headnode/setup-headnode.sh ;;
    ComputeFleet) script=compute/setup-compute-node.sh ;;
    LoginNode) script=loginnode/setup-loginnode.sh ;;
esac
log "node type $type: running $script"
if bash "$config_dir/$script" "$source_arg"; then
    log "$script succeeded"
else
    rc=$?
    die "$script failed with exit status $rc; see $NODEAGENT_BOOTSTRAP_LOG"
fi
