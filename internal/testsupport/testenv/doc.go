// Package testenv starts a real kube-apiserver and etcd for the envtest tier, with elasti's CRD and
// Istio's CRDs installed. Istio's CRDs come from the pinned istio.io/api module, never a copy.
package testenv
