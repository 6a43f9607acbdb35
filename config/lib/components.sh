# shellcheck shell=bash
# The optional components the bootstrap can add next to nodeagent. Each
# install_* function is idempotent: it probes first and does nothing when the
# component is there. Sourced after common.sh; run as background jobs where
# they are independent (apt-get calls wait for each other's dpkg lock).

# run_in DIR CMD...: run CMD inside DIR
run_in() {
    local dir=$1
    shift
    if is_dry_run; then
        printf '[dry-run] (cd %s && %s)\n' "$dir" "$*"
        return 0
    fi
    log "+ (cd $dir && $*)"
    (cd "$dir" && "$@")
}

# work_dir NAME: a fresh scratch directory (only a name in a dry run)
work_dir() {
    if is_dry_run; then
        printf '/tmp/nodeagent-%s.XXXXXX\n' "$1"
    else
        mktemp -d "/tmp/nodeagent-$1.XXXXXX"
    fi
}

# cluster_fact KEY DEFAULT: a value from ParallelCluster's cfnconfig
cluster_fact() {
    local v=""
    if [ -r "$NODEAGENT_CFNCONFIG" ]; then
        v=$(sed -n -E "s/^[[:space:]]*(export[[:space:]]+)?$1=['\"]?([^'\"]*)['\"]?[[:space:]]*$/\\2/p" \
            "$NODEAGENT_CFNCONFIG" | tail -n 1)
    fi
    printf '%s\n' "${v:-$2}"
}

# ---- EFA -----------------------------------------------------------------
install_efa() {
    if [ -x /opt/amazon/efa/bin/fi_info ]; then
        plan "EFA: already installed ($(/opt/amazon/efa/bin/fi_info --version 2>/dev/null | head -n 1))"
        return 0
    fi
    local dir
    dir=$(work_dir efa)
    download "https://efa-installer.amazonaws.com/aws-efa-installer-${EFA_INSTALLER_VERSION}.tar.gz" \
        "$dir/aws-efa-installer.tar.gz"
    run tar -xzf "$dir/aws-efa-installer.tar.gz" -C "$dir"
    # -y: no prompts; the kernel module is rebuilt for the running kernel
    run_in "$dir/aws-efa-installer" ./efa_installer.sh -y
    run rm -rf "$dir"
}

# ---- NCCL ------------------------------------------------------------------
install_nccl() {
    local prefix=/opt/nccl
    if [ -e "$prefix/lib/libnccl.so" ] || ldconfig -p 2>/dev/null | grep -q 'libnccl\.so\.2'; then
        plan "NCCL: already installed"
        return 0
    fi
    [ -x /usr/local/cuda/bin/nvcc ] || is_dry_run || { log "NCCL needs the CUDA toolkit in /usr/local/cuda"; return 1; }
    local dir
    dir=$(work_dir nccl)
    download "https://github.com/NVIDIA/nccl/archive/refs/tags/v${NCCL_VERSION}.tar.gz" "$dir/nccl.tar.gz"
    run tar -xzf "$dir/nccl.tar.gz" -C "$dir"
    # A100 (sm_80), A10G/L4/L40S (sm_86/sm_89), H100/H200 (sm_90)
    run_in "$dir/nccl-${NCCL_VERSION}" make -j "$(nproc)" src.build CUDA_HOME=/usr/local/cuda \
        "NVCC_GENCODE=-gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_86,code=sm_86 -gencode=arch=compute_89,code=sm_89 -gencode=arch=compute_90,code=sm_90"
    run_in "$dir/nccl-${NCCL_VERSION}" make install PREFIX="$prefix"
    printf '%s/lib\n' "$prefix" | write_file /etc/ld.so.conf.d/nccl.conf 0644 || true
    run ldconfig
    run rm -rf "$dir"
}

# ---- Docker + NVIDIA Container Toolkit --------------------------------------
install_docker() {
    local keyring=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
    if command -v docker >/dev/null 2>&1 && command -v nvidia-ctk >/dev/null 2>&1; then
        plan "Docker and the NVIDIA Container Toolkit: already installed"
    else
        apt_get install --no-install-recommends docker.io ca-certificates curl gnupg
        if [ ! -f "$keyring" ]; then
            local dir
            dir=$(work_dir nvidia-ctk)
            download https://nvidia.github.io/libnvidia-container/gpgkey "$dir/gpgkey"
            run gpg --batch --yes --dearmor -o "$keyring" "$dir/gpgkey"
            run rm -rf "$dir"
        fi
        # shellcheck disable=SC2016 # $(ARCH) is apt's own variable
        printf 'deb [signed-by=%s] https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /\n' "$keyring" \
            | write_file /etc/apt/sources.list.d/nvidia-container-toolkit.list 0644 || true
        apt_get update
        apt_get install --no-install-recommends nvidia-container-toolkit
    fi
    if docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"nvidia"'; then
        plan "Docker: the nvidia runtime is configured"
    else
        run nvidia-ctk runtime configure --runtime=docker
        run systemctl restart docker
    fi
    run systemctl enable docker
}

# ---- Enroot + Pyxis -----------------------------------------------------------
install_enroot() {
    if command -v enroot >/dev/null 2>&1; then
        plan "Enroot: already installed ($(enroot version 2>/dev/null || echo unknown version))"
        return 0
    fi
    local dir arch
    dir=$(work_dir enroot)
    arch=$(deb_arch)
    download "https://github.com/NVIDIA/enroot/releases/download/v${ENROOT_VERSION}/enroot_${ENROOT_VERSION}-1_${arch}.deb" \
        "$dir/enroot.deb"
    download "https://github.com/NVIDIA/enroot/releases/download/v${ENROOT_VERSION}/enroot+caps_${ENROOT_VERSION}-1_${arch}.deb" \
        "$dir/enroot+caps.deb"
    apt_get install --no-install-recommends "$dir/enroot.deb" "$dir/enroot+caps.deb"
    run rm -rf "$dir"
}

pyxis_plugin() {
    local p
    for p in /usr/local/lib/slurm/spank_pyxis.so "$SLURM_PREFIX/lib/slurm/spank_pyxis.so"; do
        if [ -f "$p" ]; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

install_pyxis() {
    if pyxis_plugin >/dev/null; then
        plan "Pyxis: already installed ($(pyxis_plugin))"
        return 0
    fi
    [ -f "$SLURM_PREFIX/include/slurm/spank.h" ] || is_dry_run \
        || { log "Pyxis needs Slurm's headers in $SLURM_PREFIX/include"; return 1; }
    local dir
    dir=$(work_dir pyxis)
    download "https://github.com/NVIDIA/pyxis/archive/refs/tags/v${PYXIS_VERSION}.tar.gz" "$dir/pyxis.tar.gz"
    run tar -xzf "$dir/pyxis.tar.gz" -C "$dir"
    run_in "$dir/pyxis-${PYXIS_VERSION}" make CPPFLAGS="-I$SLURM_PREFIX/include"
    run_in "$dir/pyxis-${PYXIS_VERSION}" make install prefix=/usr/local
    run rm -rf "$dir"
}

# The plugin stack lives in Slurm's etc, shared by the head node with every
# node; `optional` keeps srun working on nodes without the plugin (head, login).
configure_pyxis_plugstack() {
    local etc=$SLURM_PREFIX/etc
    printf 'optional /usr/local/lib/slurm/spank_pyxis.so\n' \
        | write_file "$etc/plugstack.conf.d/pyxis.conf" 0644 || true
    if ! grep -qs "plugstack.conf.d/\*" "$etc/plugstack.conf"; then
        if is_dry_run; then
            plan "add 'include $etc/plugstack.conf.d/*' to $etc/plugstack.conf"
        else
            log "adding the plugstack.conf.d include to $etc/plugstack.conf"
            printf 'include %s/plugstack.conf.d/*\n' "$etc" >> "$etc/plugstack.conf"
        fi
    fi
}

# ---- Prometheus (head node) -----------------------------------------------------
install_prometheus() {
    local prefix=/opt/prometheus arch dir cluster region config_changed=false
    arch=$(deb_arch)
    if "$prefix/prometheus" --version 2>/dev/null | grep -q "version $PROMETHEUS_VERSION "; then
        plan "Prometheus $PROMETHEUS_VERSION: already installed"
    else
        dir=$(work_dir prometheus)
        local name="prometheus-${PROMETHEUS_VERSION}.linux-${arch}"
        local base="https://github.com/prometheus/prometheus/releases/download/v${PROMETHEUS_VERSION}"
        download "$base/$name.tar.gz" "$dir/$name.tar.gz"
        download "$base/sha256sums.txt" "$dir/sha256sums.txt"
        run_in "$dir" sh -c "grep ' $name.tar.gz\$' sha256sums.txt | sha256sum -c -"
        run tar -xzf "$dir/$name.tar.gz" -C "$dir"
        run mkdir -p "$prefix"
        run cp "$dir/$name/prometheus" "$dir/$name/promtool" "$prefix/"
        run rm -rf "$dir"
    fi
    if ! getent passwd prometheus >/dev/null; then
        run useradd --system --user-group --home-dir /var/lib/prometheus --no-create-home \
            --shell /usr/sbin/nologin prometheus
    fi
    # the scrape config comes from nodeagent: every node's :9100, compute
    # nodes' :9400, the head node's :9341, found by EC2 tags of this cluster
    cluster=$(cluster_fact stack_name "$CLUSTER_NAME")
    region=$(cluster_fact cfn_region "$AWS_REGION")
    if is_dry_run; then
        plan "write /etc/prometheus/prometheus.yml from: nodeagent prometheus-config --cluster $cluster --region $region"
    else
        local tmp
        tmp=$(mktemp)
        nodeagent prometheus-config --cluster "$cluster" --region "$region" > "$tmp"
        "$prefix/promtool" check config "$tmp" >&2
        if write_file /etc/prometheus/prometheus.yml 0644 < "$tmp"; then config_changed=true; fi
        rm -f "$tmp"
    fi
    if write_file /etc/systemd/system/prometheus.service 0644 <<EOF
[Unit]
Description=Prometheus (scrapes the cluster's nodeagents)
Wants=network-online.target
After=network-online.target

[Service]
User=prometheus
Group=prometheus
ExecStart=$prefix/prometheus --config.file=/etc/prometheus/prometheus.yml --storage.tsdb.path=/var/lib/prometheus --storage.tsdb.retention.time=15d --web.listen-address=:9090
ExecReload=/bin/kill -HUP \$MAINPID
Restart=on-failure
StateDirectory=prometheus
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
CapabilityBoundingSet=

[Install]
WantedBy=multi-user.target
EOF
    then
        run systemctl daemon-reload
    fi
    run systemctl enable --now prometheus.service
    if [ "$config_changed" = true ]; then
        run systemctl reload prometheus.service
    fi
}

# ---- login node packages -------------------------------------------------------
install_login_packages() {
    local missing=() p
    # shellcheck disable=SC2086 # a space-separated list of package names
    for p in $LOGIN_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if [ "${#missing[@]}" = 0 ]; then
        plan "login packages: all installed (${LOGIN_PACKAGES:-none})"
        return 0
    fi
    apt_get install --no-install-recommends "${missing[@]}"
}
