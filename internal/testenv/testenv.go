// Package testenv starts a real kube-apiserver and etcd for the envtest tier, with elasti's CRD and
// Istio's CRDs installed. Istio's CRDs come from the pinned istio.io/api module, never a copy.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// RepoRoot is the root of the elasti module.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// IstioCRDs is the CRD file of the istio.io/api module that go.mod pins.
func IstioCRDs() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api").Output()
	if err != nil {
		return "", fmt.Errorf("locating istio.io/api in the module cache: %w", err)
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "kubernetes", "customresourcedefinitions.gen.yaml")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("istio CRDs: %w", err)
	}
	return path, nil
}

// New returns an Environment with elasti's and Istio's CRDs. It needs KUBEBUILDER_ASSETS, which
// `make test-envtest` sets to the cached, pinned binaries.
func New() (*envtest.Environment, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run the envtest tier with 'make test-envtest'")
	}
	istio, err := IstioCRDs()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths:              []string{filepath.Join(RepoRoot(), "config", "crd", "bases"), istio},
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

// Start starts an Environment from New and returns it with its rest.Config.
func Start() (*envtest.Environment, *rest.Config, error) {
	env, err := New()
	if err != nil {
		return nil, nil, err
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("starting envtest: %w", err)
	}
	return env, cfg, nil
}
