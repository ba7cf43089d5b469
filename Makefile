# elasti: scale-to-zero for Kubernetes services in an Istio mesh.
#
# Every tool is pinned and built from the Go module proxy into $(CACHE)/bin; warm runs are no-ops.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

CACHE ?= $(CURDIR)/.cache
TOOLBIN := $(CACHE)/bin
export PATH := $(TOOLBIN):$(PATH)
GO ?= go
GOFLAGS_BUILD := -trimpath
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE_REPO ?= docker.io/elasti
IMAGE_TAG ?= dev
LDFLAGS := -s -w -X github.com/elasti-dev/elasti/internal/version.Version=$(VERSION)

## Pinned tool versions. Bump with care: the module proxy does not serve every version (see docs/operations.md).
K8S_VERSION ?= v1.37.2
K8S_MINOR := $(word 2,$(subst ., ,$(K8S_VERSION)))
CONTROLLER_GEN_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
HELM_VERSION ?= v3.22.0
KUSTOMIZE_VERSION ?= v5.8.1

CONTROLLER_GEN := $(TOOLBIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
GOLANGCI_LINT := $(TOOLBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
HELM := $(TOOLBIN)/helm-$(HELM_VERSION)
KUSTOMIZE := $(TOOLBIN)/kustomize-$(KUSTOMIZE_VERSION)
ENVTEST_ASSETS := $(CACHE)/envtest/$(K8S_VERSION)
# Packages with envtest suites: the ones whose tests carry the envtest build tag.
ENVTEST_PKGS = $(sort $(foreach f,$(shell grep -rl --include='*_test.go' '^//go:build envtest' controller resolver internal test 2>/dev/null),./$(dir $(f))))
K8S_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(K8S_MINOR) \
	-X k8s.io/client-go/pkg/version.gitVersion=$(K8S_VERSION) -X k8s.io/client-go/pkg/version.gitMajor=1 \
	-X k8s.io/client-go/pkg/version.gitMinor=$(K8S_MINOR)

# Targets that start a local cluster need root: it creates a network namespace, a bridge, iptables
# rules, mounts and cgroups. Checked when make reads this file, so that a run without root stops
# before any prerequisite is built, under -j too.
ROOT_GOALS := test test-e2e test-smoke chaos soak bench bench-coldstart cluster-up cluster-down demo demo-down
ifneq ($(filter $(ROOT_GOALS),$(MAKECMDGOALS)),)
ifneq ($(shell id -u),0)
$(error make $(filter $(ROOT_GOALS),$(MAKECMDGOALS)) needs root: it starts or stops a local cluster (network namespace, bridge, iptables, mounts, cgroups). make test-unit test-envtest test-chart lint verify do not)
endif
endif

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
		/^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: fmt
fmt: ## Format the Go code.
	$(GO) fmt ./...

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

# Build tags of the root module's files (test/tools holds other modules).
GO_BUILD_TAGS = $(sort $(filter-out //go:build,$(shell grep -rhE --include='*.go' --exclude-dir=tools '^//go:build [a-z0-9_]+$$' controller resolver internal test)))

# The test/tools modules with code of their own; the others only pin commands that make builds.
TOOL_MODULES := test/tools/etcd test/tools/istio test/tools/mkimage

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (pinned) on every build tag, and on the test/tools modules.
	@missing=; for t in $(GO_BUILD_TAGS); do grep -qE "^ *build-tags: \[.*\b$$t\b" .golangci.yml || missing="$$missing $$t"; done; \
		[ -z "$$missing" ] || { echo "make lint: build tags missing from run.build-tags in .golangci.yml, so their files go unlinted:$$missing"; exit 1; }
	$(GOLANGCI_LINT) run ./...
	for m in $(TOOL_MODULES); do (cd $$m && $(GOLANGCI_LINT) run --config $(CURDIR)/.golangci.yml ./...) || exit 1; done

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object paths=./api/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and one RBAC role per binary from markers.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=elasti-controller paths=./controller/... output:rbac:artifacts:config=config/rbac/controller
	$(CONTROLLER_GEN) rbac:roleName=elasti-resolver paths=./resolver/... output:rbac:artifacts:config=config/rbac/resolver
	mkdir -p charts/elasti/crds charts/elasti/files && cp config/crd/bases/*.yaml charts/elasti/crds/
	cp config/rbac/controller/role.yaml charts/elasti/files/controller-role.yaml
	cp config/rbac/resolver/role.yaml charts/elasti/files/resolver-role.yaml

.PHONY: verify
verify: generate manifests ## Regenerate everything and fail if a generated file changed, or go.mod is not tidy.
	$(GO) mod tidy -diff
	@git diff --exit-code -- config charts/elasti/crds charts/elasti/files api || \
		{ echo "generated files are stale: run 'make generate manifests' and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- config charts/elasti/crds charts/elasti/files api)" || \
		{ git status --porcelain -- config charts/elasti/crds charts/elasti/files api; echo "untracked generated files"; exit 1; }

##@ Build

.PHONY: build
build: ## Build both binaries into bin/.
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' -o bin/elasti-controller ./controller/cmd
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' -o bin/elasti-resolver ./resolver/cmd

# The controller asks Prometheus triggers over HTTPS too, so the images carry the build machine's CA bundle.
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt

.PHONY: images
images: build ## Build OCI image tarballs of both binaries and the test images into dist/images (no Docker engine).
	mkdir -p dist/images bin
	cd test/tools/mkimage && CGO_ENABLED=0 $(GO) build -o $(CURDIR)/bin/mkimage .
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/sampleapp ./test/images/sampleapp
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/pause ./test/images/pause
	@[ -f $(CA_BUNDLE) ] || { echo "make images: no CA bundle at $(CA_BUNDLE) (install Debian's ca-certificates or set CA_BUNDLE)"; exit 1; }
	bin/mkimage -o dist/images/elasti-controller.tar -t $(IMAGE_REPO)/elasti-controller:$(IMAGE_TAG) -entrypoint /elasti-controller bin/elasti-controller=/elasti-controller $(CA_BUNDLE)=/etc/ssl/certs/ca-certificates.crt
	bin/mkimage -o dist/images/elasti-resolver.tar -t $(IMAGE_REPO)/elasti-resolver:$(IMAGE_TAG) -entrypoint /elasti-resolver bin/elasti-resolver=/elasti-resolver $(CA_BUNDLE)=/etc/ssl/certs/ca-certificates.crt
	bin/mkimage -o dist/images/sampleapp.tar -t $(IMAGE_REPO)/sampleapp:$(IMAGE_TAG) -entrypoint /sampleapp bin/sampleapp=/sampleapp
	bin/mkimage -o dist/images/pause.tar -t registry.k8s.io/pause:3.10 -user 0:0 -entrypoint /pause bin/pause=/pause

##@ Test

.PHONY: test
test: test-unit test-envtest test-chart test-e2e ## Run every test tier: unit, envtest, chart, e2e (needs root, for e2e).

.PHONY: test-unit
test-unit: ## Unit tests (fakes allowed, no binaries needed).
	$(GO) test -race -count=1 ./...

.PHONY: test-envtest
test-envtest: envtest-assets ## Ginkgo suites against a real kube-apiserver and etcd.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) test -count=1 -tags envtest -timeout 20m $(ENVTEST_PKGS)

.PHONY: envtest-assets
envtest-assets: $(ENVTEST_ASSETS)/kube-apiserver $(ENVTEST_ASSETS)/etcd ## Build kube-apiserver and etcd for envtest (cached).

$(ENVTEST_ASSETS)/kube-apiserver:
	mkdir -p $(@D)
	cd test/tools/k8s && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(K8S_LDFLAGS)' -o $@.tmp k8s.io/kubernetes/cmd/kube-apiserver
	mv $@.tmp $@

$(ENVTEST_ASSETS)/etcd:
	mkdir -p $(@D)
	cd test/tools/etcd && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@.tmp .
	mv $@.tmp $@

.PHONY: test-chart
test-chart: $(HELM) $(KUSTOMIZE) ## helm lint, template tests for each values option, and kustomize build of config/.
	$(HELM) lint --strict charts/elasti
	HELM=$(HELM) KUSTOMIZE=$(KUSTOMIZE) $(GO) test -count=1 -tags chart ./test/chart/

E2E_BIN ?= $(CACHE)/bin/e2e.test
# E2E_ARGS passes Ginkgo flags to the suite, e.g. E2E_ARGS='-ginkgo.label-filter=istio'.
E2E_ARGS ?=
E2E_TIMEOUT ?= 40m

.PHONY: test-e2e
test-e2e: cluster-tools images $(HELM) ## Black-box scenarios on a real local cluster in its own network namespace (needs root).
	$(GO) test -c -tags e2e -o $(E2E_BIN) ./test/e2e
	$(call in-cluster,env HELM=$(HELM) $(E2E_BIN) -test.v -test.timeout $(E2E_TIMEOUT) -ginkgo.v $(E2E_ARGS))

CHAOS_DURATION ?= 5m
SOAK_ROUNDS ?= 10

.PHONY: chaos
chaos: ## Chaos soak, not in make test: load through cycles to zero while resolvers, the leader, the API server and kube-proxy restart (CHAOS_DURATION=5m; needs root).
	$(MAKE) test-e2e E2E_ARGS='-ginkgo.label-filter=chaos' E2E_TIMEOUT=90m E2E_CHAOS=1 E2E_CHAOS_DURATION=$(CHAOS_DURATION) \
		E2E_CLUSTER_DIR=$(CLUSTER_DIR) E2E_CLUSTER_NETNS=$(CLUSTER_NETNS)

.PHONY: soak
soak: ## The tenant flood repeated from zero SOAK_ROUNDS times (10), with the resolver's memory checked each round (needs root).
	$(MAKE) test-e2e E2E_ARGS='-ginkgo.label-filter=tenancy' E2E_SOAK_ROUNDS=$(SOAK_ROUNDS)

.PHONY: test-smoke
test-smoke: cluster-tools images ## The harness alone: its own cluster (netns elasti-smoke), a scale from zero, a route over xDS (needs root).
	$(GO) test -count=1 -tags e2e -timeout 10m ./test/e2e/smoke -ginkgo.v

##@ Benchmark

.PHONY: bench
bench: bench-controller bench-resolver bench-coldstart ## Run every benchmark and print its figures (see docs/benchmarks.md; needs root).

.PHONY: bench-resolver
bench-resolver: ## Resolver: warm pass-through vs direct, 10,000 held at zero, wake-path latency (loadgen as its own process).
	$(GO) run ./resolver/bench

# COLDSTART_ARGS passes flags to test/bench/coldstart, e.g. COLDSTART_ARGS='-runs 7'.
COLDSTART_ARGS ?=

.PHONY: bench-coldstart
bench-coldstart: cluster-tools images $(HELM) ## Cold start on a real local cluster, three target shapes: one request and 100 at zero through elasti vs scaling directly, and the app's floor (needs root).
	CGO_ENABLED=0 $(GO) build -o $(CACHE)/bin/coldstart-$(CLUSTER_NETNS) ./test/bench/coldstart
	$(call in-cluster,$(CACHE)/bin/coldstart-$(CLUSTER_NETNS) -helm $(HELM) -chart $(CURDIR)/charts/elasti $(COLDSTART_ARGS))

.PHONY: bench-controller
bench-controller: envtest-assets ## Controller: converge 1,000 and 10,000 ElastiServices on envtest (writes, memory), idle reconciles per minute, writes after a restart.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) test -tags bench -count=1 -timeout 45m -v -run TestControllerConvergence \
		./controller/internal/reconciler/ | grep -E 'converge_bench_test.go|^(ok|FAIL|---)'

##@ Local cluster

CLUSTER_BIN := $(CACHE)/cluster/bin
COREDNS_VERSION ?= v1.15.0
CLUSTER_TOOLS := $(addprefix $(CLUSTER_BIN)/,kube-apiserver etcd kube-controller-manager kube-scheduler kubelet kube-proxy kubectl coredns pilot-discovery xdsprobe)
ELASTI_CLUSTER := $(CACHE)/bin/elasti-cluster
ISTIO_CRDS = $(shell $(GO) list -m -f '{{.Dir}}' istio.io/api)/kubernetes/customresourcedefinitions.gen.yaml
# Override CLUSTER_DIR and CLUSTER_NETNS to run a second cluster beside the first.
CLUSTER_DIR ?= $(CACHE)/cluster
CLUSTER_NETNS ?= elasti
CLUSTER = $(ELASTI_CLUSTER) -dir $(CLUSTER_DIR) -netns $(CLUSTER_NETNS) -bin $(CLUSTER_BIN) -images dist/images -istio-crds $(ISTIO_CRDS)

# A fresh local cluster: whatever an earlier run left is stopped first, quietly.
define cluster-fresh
-$(CLUSTER) down >/dev/null 2>&1
$(CLUSTER) up
endef

# $(call in-cluster,CMD): CMD inside a fresh local cluster, which is stopped whatever CMD returns;
# the recipe fails with CMD's status.
define in-cluster
$(cluster-fresh)
status=0; $(CLUSTER) exec -- $(1) || status=$$?; $(CLUSTER) down; exit $$status
endef

DEBIAN_PACKAGES := containerd runc containernetworking-plugins iptables conntrack prometheus curl

.PHONY: cluster-packages
cluster-packages: ## Install the Debian packages the local cluster needs, when missing (needs root then).
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || printf '%s ' $$p; done); missing=$${missing% }; \
	if [ -n "$$missing" ]; then [ "$$(id -u)" = 0 ] || { echo "make cluster-packages: installing $$missing needs root"; exit 1; }; \
		echo "installing $$missing"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

.PHONY: cluster-tools
cluster-tools: cluster-packages $(CLUSTER_TOOLS) $(ELASTI_CLUSTER) ## Build every pinned binary of the local cluster (cached).

$(CLUSTER_BIN)/kube-apiserver $(CLUSTER_BIN)/etcd: $(CLUSTER_BIN)/%: $(ENVTEST_ASSETS)/%
	mkdir -p $(@D) && cp $< $@

$(addprefix $(CLUSTER_BIN)/,kube-controller-manager kube-scheduler kubelet kube-proxy kubectl):
	mkdir -p $(@D)
	cd test/tools/k8s && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(K8S_LDFLAGS)' -o $@.tmp k8s.io/kubernetes/cmd/$(@F)
	mv $@.tmp $@

$(CLUSTER_BIN)/coredns:
	GOBIN=$(@D) CGO_ENABLED=0 $(GO) install -trimpath -ldflags '-s -w' github.com/coredns/coredns@$(COREDNS_VERSION)

$(CLUSTER_BIN)/pilot-discovery:
	mkdir -p $(@D)
	cd test/tools/istio && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@.tmp istio.io/istio/pilot/cmd/pilot-discovery
	mv $@.tmp $@

# xdsprobe asks istiod for a sidecar's routes: the e2e tier's view of what elasti writes, with no Envoy.
$(CLUSTER_BIN)/xdsprobe: $(wildcard test/tools/istio/xdsprobe/*.go)
	mkdir -p $(@D)
	cd test/tools/istio && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@ ./xdsprobe

.PHONY: $(ELASTI_CLUSTER)
$(ELASTI_CLUSTER):
	CGO_ENABLED=0 $(GO) build -o $@ ./test/localcluster/cmd/elasti-cluster

.PHONY: cluster-up
cluster-up: cluster-tools images ## Start the local cluster in its own network namespace (needs root).
	$(CLUSTER) up

.PHONY: demo
demo: cluster-tools images $(HELM) ## The main job: a local cluster with elasti and a sample going to zero and back (needs root).
	$(cluster-fresh)
	$(CLUSTER) exec -- test/demo/prometheus.sh $(CLUSTER_DIR)
	HELM=$(HELM) KUBECTL=$(CLUSTER_BIN)/kubectl $(CLUSTER) exec -- test/demo/demo.sh
	@echo
	@echo "The cluster is still running, in network namespace $(CLUSTER_NETNS). Use it with:"
	@echo "  $(CLUSTER) exec -- $(CLUSTER_BIN)/kubectl get elastiservices -A"
	@echo "  (or: nsenter --net=/var/run/netns/$(CLUSTER_NETNS) kubectl --kubeconfig $(CLUSTER_DIR)/run/pki/admin.kubeconfig ...)"
	@echo "Stop it with: make demo-down"

.PHONY: demo-down
demo-down: cluster-down ## Stop the demo's cluster (needs root).

.PHONY: cluster-down
cluster-down: $(ELASTI_CLUSTER) ## Stop the local cluster and remove its namespace (needs root).
	$(CLUSTER) down

##@ Tools

$(CONTROLLER_GEN):
	GOBIN=$(TOOLBIN) CGO_ENABLED=0 $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(TOOLBIN)/controller-gen $@

$(GOLANGCI_LINT):
	GOBIN=$(TOOLBIN) CGO_ENABLED=0 $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(TOOLBIN)/golangci-lint $@

$(HELM):
	GOBIN=$(TOOLBIN) CGO_ENABLED=0 $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(TOOLBIN)/helm $@

$(KUSTOMIZE):
	GOBIN=$(TOOLBIN) CGO_ENABLED=0 $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(TOOLBIN)/kustomize $@
