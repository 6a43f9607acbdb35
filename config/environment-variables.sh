# shellcheck shell=bash
# Settings of the nodeagent ParallelCluster bootstrap and of the cluster
# template. Edit the defaults here (then `config/deploy-to-s3.sh`), or
# override any of them from the environment. Sourced by every script in
# config/; render the template with:
#
#     . config/environment-variables.sh
#     envsubst < config/cluster-config.yaml.template > cluster-config.yaml
#     pcluster create-cluster --cluster-name "$CLUSTER_NAME" --cluster-configuration cluster-config.yaml

# ---- where things are --------------------------------------------------
export CLUSTER_NAME="${CLUSTER_NAME:-gpu-cluster}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
# config/ goes to s3://$S3_BUCKET/$S3_PREFIX/config/, the .deb to .../packages/
export S3_BUCKET="${S3_BUCKET:-my-pcluster-bucket}"
export S3_PREFIX="${S3_PREFIX:-nodeagent}"

# ---- what the bootstrap sets up, per node type ("true"/"false") ----------
export ENABLE_HEADNODE_SETUP="${ENABLE_HEADNODE_SETUP:-true}"
export ENABLE_COMPUTE_SETUP="${ENABLE_COMPUTE_SETUP:-true}"
export ENABLE_LOGINNODE_SETUP="${ENABLE_LOGINNODE_SETUP:-true}"

# Optional components. nodeagent itself is always installed; it is the only
# host and GPU exporter (no node_exporter, no dcgm-exporter next to it).
# Each component is skipped when the node already has it (ParallelCluster's
# own AMIs ship EFA, and recent ones Pyxis/Enroot), so re-runs are cheap.
# Head node: Prometheus scraping every node's nodeagent (EC2 discovery)
export ENABLE_PROMETHEUS="${ENABLE_PROMETHEUS:-true}"
# Compute nodes: the EFA installer (driver, libfabric, aws-ofi-nccl)
export ENABLE_EFA_INSTALLER="${ENABLE_EFA_INSTALLER:-true}"
# Compute nodes: NCCL built from source into /opt/nccl
export ENABLE_NCCL="${ENABLE_NCCL:-true}"
# Compute nodes: Docker and the NVIDIA Container Toolkit
export ENABLE_DOCKER="${ENABLE_DOCKER:-true}"
# Compute nodes: Enroot and the Pyxis SPANK plugin; head node: plugstack.conf
export ENABLE_PYXIS="${ENABLE_PYXIS:-true}"
# Login nodes: packages for users (empty: none)
export LOGIN_PACKAGES="${LOGIN_PACKAGES-vim git htop}"
# run `nodeagent check` last and fail the node when it fails
export NODEAGENT_CHECK="${NODEAGENT_CHECK:-true}"

# ---- component versions ------------------------------------------------
export EFA_INSTALLER_VERSION="${EFA_INSTALLER_VERSION:-1.38.1}"
export NCCL_VERSION="${NCCL_VERSION:-2.23.4-1}"
export ENROOT_VERSION="${ENROOT_VERSION:-3.5.0}"
export PYXIS_VERSION="${PYXIS_VERSION:-0.20.0}"
export PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-2.53.3}"
# Slurm as ParallelCluster installs it
export SLURM_PREFIX="${SLURM_PREFIX:-/opt/slurm}"

# ---- cluster template (cluster-config.yaml.template) --------------------
export PCLUSTER_OS="${PCLUSTER_OS:-ubuntu2204}"
export SSH_KEY_NAME="${SSH_KEY_NAME:-my-key}"
export HEAD_NODE_INSTANCE_TYPE="${HEAD_NODE_INSTANCE_TYPE:-m6i.2xlarge}"
export HEAD_NODE_SUBNET_ID="${HEAD_NODE_SUBNET_ID:-subnet-0123456789abcdef0}"
export COMPUTE_SUBNET_ID="${COMPUTE_SUBNET_ID:-subnet-0fedcba9876543210}"
export COMPUTE_QUEUE_NAME="${COMPUTE_QUEUE_NAME:-gpu}"
export COMPUTE_INSTANCE_TYPE="${COMPUTE_INSTANCE_TYPE:-p5.48xlarge}"
export COMPUTE_MIN_COUNT="${COMPUTE_MIN_COUNT:-0}"
export COMPUTE_MAX_COUNT="${COMPUTE_MAX_COUNT:-4}"
export LOGIN_NODE_INSTANCE_TYPE="${LOGIN_NODE_INSTANCE_TYPE:-m6i.xlarge}"
export LOGIN_NODE_COUNT="${LOGIN_NODE_COUNT:-1}"
# the account of the cluster (policy ARNs, the operator policy)
export AWS_ACCOUNT_ID="${AWS_ACCOUNT_ID:-123456789012}"
# ARNs of the policies config/create-iam-policies.sh creates (it prints them)
export NODEAGENT_BOOTSTRAP_POLICY_ARN="${NODEAGENT_BOOTSTRAP_POLICY_ARN:-arn:aws:iam::${AWS_ACCOUNT_ID}:policy/${CLUSTER_NAME}-nodeagent-bootstrap}"
export NODEAGENT_PUBLISH_POLICY_ARN="${NODEAGENT_PUBLISH_POLICY_ARN:-arn:aws:iam::${AWS_ACCOUNT_ID}:policy/${CLUSTER_NAME}-nodeagent-publish}"
export NODEAGENT_DISCOVERY_POLICY_ARN="${NODEAGENT_DISCOVERY_POLICY_ARN:-arn:aws:iam::${AWS_ACCOUNT_ID}:policy/${CLUSTER_NAME}-nodeagent-discovery}"
