#!/usr/bin/env bash
# The story `make demo` tells: a Service going to zero and back on a real local cluster.
# Runs inside the cluster's network namespace (the Makefile starts it with elasti-cluster exec).
set -euo pipefail
K="${KUBECTL:?} --kubeconfig ${KUBECONFIG:?}"
t0=$(date +%s.%N)
say() { printf "\n\033[1m[%6.1fs] %s\033[0m\n" "$(awk -v a="$(date +%s.%N)" -v b="$t0" "BEGIN{print a-b}")" "$*"; }
es() { $K get elastiservices -n demo; }

say "Installing elasti from charts/elasti (images built from this tree)"
"${HELM:?}" upgrade --install elasti charts/elasti -n elasti-system --create-namespace --wait --timeout 3m \
  --set image.tag=dev --set image.pullPolicy=Never --set resolver.istio.sidecar=false --set resolver.upstream=pods \
  --set controller.drainDelay=2s >/dev/null
$K get pods -n elasti-system

say "Deploying the sample app, its Service, DestinationRule, VirtualService and an ElastiService (cooldown 20s)"
$K apply -f samples/demo/demo.yaml >/dev/null
$K rollout status deployment/shop -n demo --timeout=2m >/dev/null
IP=$($K get svc shop -n demo -o jsonpath='{.spec.clusterIP}')
call() { curl -s -m 60 -o /dev/null -H "Host: shop.demo" -w "%{http_code} in %{time_total}s" "http://$IP/echo"; }
for i in 1 2 3; do sleep 1; es | tail -1 >/dev/null; done
es

say "Traffic: three requests straight to the pod (Serve mode: elasti is not in the path)"
for i in 1 2 3; do echo "  GET /echo -> $(call)"; done

say "Idle: waiting for the cooldown; elasti switches routes to the resolver first, then scales to zero"
for i in $(seq 1 120); do
  [ "$($K get deployment shop -n demo -o jsonpath='{.spec.replicas}')" = 0 ] && break; sleep 1
done
es
$K get virtualservice shop -n demo -o jsonpath='  VirtualService now routes to: {.spec.http[0].route[0].destination.host}:{.spec.http[0].route[0].destination.port.number}{"\n"}'
$K get events -n demo --field-selector involvedObject.kind=ElastiService -o custom-columns=REASON:.reason,MESSAGE:.message --sort-by=.metadata.creationTimestamp | tail -4
for i in $(seq 1 60); do [ -z "$($K get pods -n demo -o name)" ] && break; sleep 1; done
echo "  pods in demo: $($K get pods -n demo -o name | wc -l)"

say "A request at zero: the resolver holds it, wakes the target, and replays it when a pod is ready"
echo "  GET /echo -> $(call)"
es
$K get events -n demo --field-selector involvedObject.kind=ElastiService -o custom-columns=REASON:.reason,MESSAGE:.message --sort-by=.metadata.creationTimestamp | tail -3

say "Back in Serve mode once the pod is ready"
for i in $(seq 1 60); do [ "$($K get es shop -n demo -o jsonpath='{.status.mode}')" = Serve ] && break; sleep 1; done
es
$K get virtualservice shop -n demo -o jsonpath='  VirtualService routes to: {.spec.http[0].route[0].destination.host} subset {.spec.http[0].route[0].destination.subset}{"\n"}'
