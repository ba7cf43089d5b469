#!/usr/bin/env bash
# Usage: prometheus.sh CLUSTER_DIR
# Starts Debian's Prometheus on the demo node (10.200.0.1:9090), which samples/demo's trigger asks.
# Runs inside the cluster's network namespace (the Makefile starts it with elasti-cluster exec).
# Its PID goes into the cluster's pids/ and its command line names the state directory, so
# `elasti-cluster down` stops it with the cluster.
set -euo pipefail
# Absolute, as elasti-cluster makes its own, so that down finds the command line.
run="$(cd "${1:?usage: prometheus.sh CLUSTER_DIR}" && pwd)/run"
mkdir -p "$run/prometheus"
cat > "$run/prometheus/prometheus.yml" <<'YAML'
global: {scrape_interval: 5s}
scrape_configs: [{job_name: prometheus, static_configs: [{targets: ["10.200.0.1:9090"]}]}]
YAML
setsid prometheus --config.file="$run/prometheus/prometheus.yml" \
  --storage.tsdb.path="$run/prometheus/data" --web.listen-address=10.200.0.1:9090 \
  > "$run/logs/prometheus.log" 2>&1 < /dev/null &
echo $! > "$run/pids/prometheus.pid"
