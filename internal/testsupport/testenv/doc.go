// Package testenv starts a real kube-apiserver and etcd for the envtest tier, with elasti's CRD and
// Istio's CRDs installed, and any other CRDs a suite asks for, such as KEDA's. They come from the
// pinned modules, never a copy.
package testenv
