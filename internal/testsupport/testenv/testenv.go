package testenv

import (
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/elasti-dev/elasti/internal/testsupport/repo"
)

// New returns an Environment with elasti's and Istio's CRDs, and the CRD files or directories in
// crds, such as repo.KEDACRDs(). It needs KUBEBUILDER_ASSETS, which `make test-envtest` sets to
// the cached, pinned binaries.
func New(crds ...string) (*envtest.Environment, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run the envtest tier with 'make test-envtest'")
	}
	istio, err := repo.IstioCRDs()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths:              append([]string{repo.Path("config", "crd", "bases"), istio}, crds...),
			ErrorIfPathMissing: true,
			MaxTime:            time.Minute,
		},
		ErrorIfCRDPathMissing: true,
	}
	// Room for thousands of Services (a public and a private one per ElastiService) in the
	// benchmarks; envtest's default range holds 254.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/16")
	return env, nil
}

// Start starts an Environment from New(crds...) and returns it with its rest.Config.
func Start(crds ...string) (*envtest.Environment, *rest.Config, error) {
	env, err := New(crds...)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("starting envtest: %w", err)
	}
	return env, cfg, nil
}
