#!/bin/bash
# Create (or update) the three IAM policies the cluster template attaches,
# from the iam/*.json.template files, and print their ARNs as the exports
# environment-variables.sh expects:
#
#     ${CLUSTER_NAME}-nodeagent-bootstrap   every node: read s3://$S3_BUCKET/$S3_PREFIX/
#     ${CLUSTER_NAME}-nodeagent-publish     head, login: cloudwatch:PutMetricData
#                                           in ParallelCluster/$CLUSTER_NAME only
#     ${CLUSTER_NAME}-nodeagent-discovery   head: EC2 discovery for Prometheus
#
#     config/create-iam-policies.sh [--operator]
#
# --operator also creates ${CLUSTER_NAME}-nodeagent-operator (upload to the
# bucket prefix, the cluster's dashboards and alarms) for the people or CI
# that deploy. Running it again updates a policy whose document changed (a
# new default version) and leaves the others alone.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=environment-variables.sh
. "$here/environment-variables.sh"

names=(bootstrap publish discovery)
if [ "${1:-}" = --operator ]; then names+=(operator); fi

aws=(aws --region "$AWS_REGION")
if [ -n "${AWS_ENDPOINT_URL:-}" ]; then aws+=(--endpoint-url "$AWS_ENDPOINT_URL"); fi
account=$("${aws[@]}" sts get-caller-identity --query Account --output text)
export AWS_ACCOUNT_ID=$account

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for name in "${names[@]}"; do
    policy=$CLUSTER_NAME-nodeagent-$name
    arn=arn:aws:iam::$account:policy/$policy
    # only these variables are substituted; anything else stays as written
    # shellcheck disable=SC2016
    envsubst '${S3_BUCKET} ${S3_PREFIX} ${CLUSTER_NAME} ${AWS_REGION} ${AWS_ACCOUNT_ID}' \
        < "$here/iam/$name-policy.json.template" > "$work/$name.json"
    python3 -m json.tool "$work/$name.json" > /dev/null
    if version=$("${aws[@]}" iam get-policy --policy-arn "$arn" --query Policy.DefaultVersionId \
        --output text 2> /dev/null); then
        "${aws[@]}" iam get-policy-version --policy-arn "$arn" --version-id "$version" \
            --query PolicyVersion.Document --output json > "$work/$name.current.json"
        if python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])) != json.load(open(sys.argv[2])))' \
            "$work/$name.json" "$work/$name.current.json"; then
            echo "create-iam-policies: $policy is up to date" >&2
        else
            # IAM keeps five versions: drop the oldest non-default one first
            read -r count oldest < <("${aws[@]}" iam list-policy-versions --policy-arn "$arn" --output text \
                --query '[length(Versions), Versions[?!IsDefaultVersion]|sort_by(@, &CreateDate)[0].VersionId]')
            if [ "$count" -ge 5 ] && [ "$oldest" != None ]; then
                "${aws[@]}" iam delete-policy-version --policy-arn "$arn" --version-id "$oldest"
            fi
            "${aws[@]}" iam create-policy-version --policy-arn "$arn" \
                --policy-document "file://$work/$name.json" --set-as-default > /dev/null
            echo "create-iam-policies: updated $policy" >&2
        fi
    else
        "${aws[@]}" iam create-policy --policy-name "$policy" \
            --description "nodeagent ($name) for ParallelCluster cluster $CLUSTER_NAME" \
            --policy-document "file://$work/$name.json" > /dev/null
        echo "create-iam-policies: created $policy" >&2
    fi
    var=NODEAGENT_$(echo "$name" | tr '[:lower:]' '[:upper:]')_POLICY_ARN
    echo "export $var=$arn"
done
