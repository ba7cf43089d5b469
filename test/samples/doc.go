// Package samples checks the manifests in samples/ against a real API server: its envtest suite
// server-side dry-runs every object with strict field validation, with elasti's, Istio's, KEDA's
// and Argo Rollouts' CRDs installed from pinned modules.
package samples
