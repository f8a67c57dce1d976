#!/bin/sh
# Makes the keys of pods <name>-0 .. <name>-<replicas-1> in <dir> for the Secret keynode-keys, keeping every
# key already there (so the same command serves a scale-up):
#   deploy/kubernetes/make-keys.sh ./keynode-keys 3
#   kubectl create secret generic keynode-keys --from-file=./keynode-keys --dry-run=client -o yaml | kubectl apply -f -
# A pod's keys never change: keep <dir> somewhere safe, apart from backups (README: Kubernetes).
# Uses `keynode` from PATH, or KEYNODE (e.g. KEYNODE="npx keynode").
set -eu
usage='usage: make-keys.sh <dir> <replicas> [statefulset name, default keynode]'
dir=${1:?$usage}
replicas=${2:?$usage}
name=${3:-keynode}
case $replicas in '' | *[!0-9]*) echo "make-keys.sh: <replicas> must be a number, got '$replicas'; $usage" >&2; exit 2 ;; esac
keynode=${KEYNODE:-keynode}
umask 077
mkdir -p "$dir"
i=0
while [ "$i" -lt "$replicas" ]; do
  pod="$name-$i"
  # The operator identity: this pod's container ID, and the principal that administers it.
  [ -e "$dir/$pod.operator.key" ] || $keynode identity new "$dir/$pod.operator.key" >/dev/null
  # The master key: seals the private keys of the pod's nodes at rest.
  [ -e "$dir/$pod.master.key" ] || head -c 32 /dev/urandom | base64 >"$dir/$pod.master.key"
  i=$((i + 1))
done
