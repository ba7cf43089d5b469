// Pins the KEDA and Argo Rollouts modules whose CRDs the samples' envtest dry run installs
// (test/samples). Nothing imports them: the test reads the CRD YAML they ship from the module
// cache, located with `go mod download -json`, which checks each module against go.sum. Do not
// run go mod tidy here: it would drop the requirements. Argo Rollouts v1.10.1, not v1.10.2, which
// needs go 1.26.10.
module github.com/elasti-dev/elasti/test/tools/crds

go 1.26.0

require (
	github.com/argoproj/argo-rollouts v1.10.1
	github.com/kedacore/keda/v2 v2.21.0
)
