// Package memory keeps the resolver under its container's memory limit. Every held request is
// memory, and an OOM kill would drop every tenant's held requests at once, so near the limit
// the resolver refuses new holds (503 with Retry-After) instead.
package memory

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// Guard samples the process's memory and says whether a new hold still fits.
type Guard struct {
	high uint64
	over atomic.Bool
	read func() uint64
}

// NewGuard returns a Guard that refuses new holds while the memory in use is above fraction of
// limit (bytes). A zero limit admits everything.
func NewGuard(limit uint64, fraction float64) *Guard {
	return &Guard{high: uint64(float64(limit) * fraction), read: inUse}
}

// Admit says whether a new request may be held.
func (g *Guard) Admit() bool { return !g.over.Load() }

// Sample reads the memory in use once.
func (g *Guard) Sample() {
	if g.high == 0 {
		return
	}
	g.over.Store(g.read() > g.high)
}

// Run samples every interval until ctx ends. Reading runtime/metrics stops nothing, so a short
// interval costs little.
func (g *Guard) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		g.Sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// inUse is the memory the Go runtime holds from the OS and has not returned, which is what the
// container's limit counts (less the binary and stacks outside the heap, which are small).
func inUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	total, released := s[0].Value.Uint64(), s[1].Value.Uint64()
	if released > total {
		return 0
	}
	return total - released
}

// SetLimit sets the Go runtime's soft memory limit to fraction of limit (bytes), unless
// GOMEMLIMIT set one already, so that the garbage collector works harder before the container's
// limit is reached rather than after. It returns the limit now in force.
func SetLimit(limit uint64, fraction float64, envSet bool) int64 {
	if limit != 0 && !envSet {
		debug.SetMemoryLimit(int64(float64(limit) * fraction))
	}
	return debug.SetMemoryLimit(-1) // a negative value reads the limit

}
