//go:build tools

// Package tools records the Istio command this module builds, so that go mod tidy keeps it.
package tools

import (
	_ "istio.io/istio/pilot/cmd/pilot-discovery"
)
