# shellcheck shell=bash
# Shared functions of the nodeagent bootstrap scripts. Sourced, never run.
#
# Conventions:
# - every command that changes the node goes through `run` (or a helper built
#   on it): with DRY_RUN=1 it is printed as "[dry-run] ..." and not executed;
#   read-only probes ("is EFA already installed?") run in both modes, so the
#   plan shows what a real run would do on this node;
# - background work goes through job_start/jobs_wait: each job logs to its
#   own file, and jobs_wait waits for every job, appends each log to the main
#   log and fails, naming them, when any job failed;
# - log lines go to stderr and, unless DRY_RUN=1, to NODEAGENT_BOOTSTRAP_LOG.

: "${DRY_RUN:=0}"
: "${NODEAGENT_BOOTSTRAP_LOG:=/var/log/nodeagent-bootstrap.log}"
: "${NODEAGENT_CFNCONFIG:=/etc/parallelcluster/cfnconfig}"
: "${NODEAGENT_DNA_JSON:=/etc/chef/dna.json}"
# seconds apt-get waits for the dpkg lock held by a parallel job
: "${APT_LOCK_TIMEOUT:=900}"
# seconds one download may take
: "${DOWNLOAD_TIMEOUT:=600}"

BOOTSTRAP_STEP=${BOOTSTRAP_STEP:-bootstrap}
JOB_NAMES=()
JOB_PIDS=()

is_dry_run() { [ "$DRY_RUN" = 1 ] || [ "$DRY_RUN" = true ]; }
is_true() { [ "${1:-}" = true ] || [ "${1:-}" = 1 ] || [ "${1:-}" = yes ]; }

log() {
    local line
    line="$(date -u +%Y-%m-%dT%H:%M:%SZ) [$BOOTSTRAP_STEP] $*"
    printf '%s\n' "$line" >&2
    if ! is_dry_run && [ -n "${NODEAGENT_BOOTSTRAP_LOG:-}" ]; then
        printf '%s\n' "$line" >> "$NODEAGENT_BOOTSTRAP_LOG" 2>/dev/null || true
    fi
}

die() {
    log "ERROR: $*"
    exit 1
}

# run CMD ARGS...: execute (logged) or, in a dry run, print the plan line
run() {
    if is_dry_run; then
        printf '[dry-run] %s\n' "$*"
        return 0
    fi
    log "+ $*"
    local rc=0
    "$@" || rc=$?
    if [ "$rc" != 0 ]; then
        log "command failed with exit status $rc: $*"
    fi
    return "$rc"
}

# plan TEXT: a step of the plan that is not a single command
plan() {
    if is_dry_run; then
        printf '[dry-run] %s\n' "$*"
    else
        log "$*"
    fi
}

setup_logging() {
    if is_dry_run; then
        log "DRY_RUN=1: printing the plan; nothing on this node is changed"
        return 0
    fi
    mkdir -p "$(dirname "$NODEAGENT_BOOTSTRAP_LOG")"
    touch "$NODEAGENT_BOOTSTRAP_LOG"
    chmod 0640 "$NODEAGENT_BOOTSTRAP_LOG" 2>/dev/null || true
    JOB_LOG_DIR="${NODEAGENT_BOOTSTRAP_LOG%.log}.d"
    mkdir -p "$JOB_LOG_DIR"
}

require_root() {
    if ! is_dry_run && [ "$(id -u)" != 0 ]; then
        die "must run as root (ParallelCluster runs custom actions as root); DRY_RUN=1 shows the plan as any user"
    fi
}

# ---- background jobs ----------------------------------------------------

# job_start NAME FUNCTION [ARGS...]: run FUNCTION in the background with
# errexit on; its output goes to <log>.d/NAME.log. In a dry run jobs run one
# after another so that the printed plan is in a stable order.
job_start() {
    local name=$1
    shift
    if is_dry_run; then
        printf '[dry-run] job %s (in parallel with the other jobs of this step):\n' "$name"
        ( set -Eeuo pipefail; BOOTSTRAP_STEP=$name; "$@" ) | sed 's/^/    /'
        return "${PIPESTATUS[0]}"
    fi
    ( set -Eeuo pipefail; BOOTSTRAP_STEP=$name; "$@" ) > "$JOB_LOG_DIR/$name.log" 2>&1 &
    JOB_NAMES+=("$name")
    JOB_PIDS+=("$!")
    log "started job $name (pid $!, log $JOB_LOG_DIR/$name.log)"
}

# jobs_wait: wait for every job started since the last call; fail naming the
# jobs that failed, after all of them have finished
jobs_wait() {
    local i rc name failed=()
    for i in "${!JOB_PIDS[@]}"; do
        name=${JOB_NAMES[$i]}
        rc=0
        wait "${JOB_PIDS[$i]}" || rc=$?
        if [ -n "${NODEAGENT_BOOTSTRAP_LOG:-}" ] && [ -f "$JOB_LOG_DIR/$name.log" ]; then
            sed "s/^/[job $name] /" "$JOB_LOG_DIR/$name.log" >> "$NODEAGENT_BOOTSTRAP_LOG" || true
        fi
        if [ "$rc" = 0 ]; then
            log "job $name finished"
        else
            log "job $name FAILED with exit status $rc; its last lines:"
            tail -n 20 "$JOB_LOG_DIR/$name.log" | sed "s/^/    [$name] /" >&2 || true
            failed+=("$name")
        fi
    done
    JOB_NAMES=()
    JOB_PIDS=()
    if [ "${#failed[@]}" -gt 0 ]; then
        die "background job(s) failed: ${failed[*]} (logs in $JOB_LOG_DIR/)"
    fi
}

# ---- node facts -----------------------------------------------------------

# node_type: HeadNode, ComputeFleet or LoginNode, from ParallelCluster's
# cfnconfig (cfn_node_type), else from the chef attributes in dna.json
node_type() {
    local t=""
    if [ -r "$NODEAGENT_CFNCONFIG" ]; then
        t=$(sed -n -E "s/^[[:space:]]*(export[[:space:]]+)?cfn_node_type=['\"]?([A-Za-z]+)['\"]?[[:space:]]*$/\\2/p" \
            "$NODEAGENT_CFNCONFIG" | tail -n 1)
    fi
    if [ -z "$t" ] && [ -r "$NODEAGENT_DNA_JSON" ]; then
        t=$(python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(d.get("cluster", {}).get("node_type", ""))' "$NODEAGENT_DNA_JSON" 2>/dev/null || true)
    fi
    case "$t" in
        HeadNode|ComputeFleet|LoginNode) printf '%s\n' "$t" ;;
        "") return 1 ;;
        *) log "unknown node type '$t'"; return 1 ;;
    esac
}

deb_arch() { dpkg --print-architecture; }

require_debian_family() {
    if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
        die "nodeagent ships as a .deb: this bootstrap needs Ubuntu or Debian (dpkg and apt-get)"
    fi
}

# apt_get ARGS...: non-interactive, waiting for the dpkg lock a parallel job holds
apt_get() {
    run env DEBIAN_FRONTEND=noninteractive apt-get -o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT" -y "$@"
}

# download URL DEST
download() {
    run curl -fsSL --retry 3 --connect-timeout 20 --max-time "$DOWNLOAD_TIMEOUT" -o "$2" "$1"
}

# write_file PATH MODE: write stdin to PATH (atomically) unless it already
# holds exactly that; returns 0 when written, 1 when unchanged
write_file() {
    local path=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat > "$tmp"
    if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
        return 1
    fi
    if is_dry_run; then
        printf '[dry-run] write %s (mode %s, %s bytes)\n' "$path" "$mode" "$(wc -c < "$tmp")"
        rm -f "$tmp"
        return 0
    fi
    log "writing $path"
    mkdir -p "$(dirname "$path")"
    install -m "$mode" "$tmp" "$path"
    rm -f "$tmp"
}

# ---- nodeagent itself -----------------------------------------------------

# fetch_from_source REL DEST_DIR: copy SOURCE/REL (a directory) to DEST_DIR;
# SOURCE is s3://bucket/prefix or a local directory
fetch_dir() {
    local rel=$1 dest=$2
    case "$NODEAGENT_SOURCE" in
        s3://*) run aws s3 sync --only-show-errors "${NODEAGENT_SOURCE%/}/$rel/" "$dest/" ;;
        *) [ -d "$NODEAGENT_SOURCE/$rel" ] || die "no $NODEAGENT_SOURCE/$rel"
           run cp -a "$NODEAGENT_SOURCE/$rel/." "$dest/" ;;
    esac
}

# find_deb: print the path of the nodeagent .deb for this architecture: the
# file NODEAGENT_DEB names, else the newest packages/nodeagent_*_ARCH.deb of
# the source (downloaded from S3 first)
find_deb() {
    local arch dir candidates
    if [ -n "${NODEAGENT_DEB:-}" ]; then
        [ -f "$NODEAGENT_DEB" ] || die "NODEAGENT_DEB=$NODEAGENT_DEB does not exist"
        printf '%s\n' "$NODEAGENT_DEB"
        return 0
    fi
    arch=$(deb_arch)
    case "$NODEAGENT_SOURCE" in
        s3://*)
            if is_dry_run; then
                dir=/tmp/nodeagent-packages.XXXXXX
                plan "download ${NODEAGENT_SOURCE%/}/packages/nodeagent_*_$arch.deb to $dir" >&2
                printf '%s\n' "$dir/nodeagent_VERSION_$arch.deb"
                return 0
            fi
            dir=$(mktemp -d /tmp/nodeagent-packages.XXXXXX)
            run aws s3 cp --only-show-errors --recursive --exclude '*' --include "nodeagent_*_$arch.deb" \
                "${NODEAGENT_SOURCE%/}/packages/" "$dir/" >&2
            ;;
        *) dir=$NODEAGENT_SOURCE/packages ;;
    esac
    candidates=$(find "$dir" -maxdepth 1 -name "nodeagent_*_$arch.deb" 2>/dev/null | sort -V)
    [ -n "$candidates" ] || die "no nodeagent_*_$arch.deb in ${NODEAGENT_SOURCE%/}/packages/"
    printf '%s\n' "$candidates" | tail -n 1
}

# install_nodeagent ROLE: install the .deb (unless this version is installed)
# and run `nodeagent install --role ROLE`
install_nodeagent() {
    local role=$1 deb want have config=()
    deb=$(find_deb)
    if [ -f "$deb" ]; then
        want=$(dpkg-deb -f "$deb" Version)
        have=$(dpkg-query -W -f='${Version}' nodeagent 2>/dev/null || true)
        if [ "$have" = "$want" ]; then
            plan "nodeagent $have is already installed"
        else
            # apt resolves python3 from the node's own repositories when it is
            # missing; with python3 present, nothing is downloaded
            apt_get install --no-install-recommends "$deb"
        fi
    else
        apt_get install --no-install-recommends "$deb"
    fi
    if [ -n "${NODEAGENT_CONFIG_FILE:-}" ]; then
        config=(--config "$NODEAGENT_CONFIG_FILE")
    fi
    run nodeagent install --role "$role" "${config[@]}"
}

# check_nodeagent ROLE: the smoke test; its failure fails the bootstrap
check_nodeagent() {
    local role=$1
    if ! is_true "${NODEAGENT_CHECK:-true}"; then
        plan "NODEAGENT_CHECK=false: skipping nodeagent check"
        return 0
    fi
    if ! run nodeagent check --role "$role"; then
        die "nodeagent check --role $role failed: the node is not healthy (see the table above)"
    fi
}
