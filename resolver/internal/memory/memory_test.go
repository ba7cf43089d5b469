package memory

import (
	"runtime/debug"
	"testing"
)

func TestGuard(t *testing.T) {
	var used uint64
	g := NewGuard(1000, 0.8)
	g.read = func() uint64 { return used }
	for _, tc := range []struct {
		used uint64
		want bool
	}{{100, true}, {800, true}, {801, false}, {5000, false}, {799, true}} {
		used = tc.used
		g.Sample()
		if got := g.Admit(); got != tc.want {
			t.Errorf("with %d of 1000 bytes in use, Admit = %v, want %v", tc.used, got, tc.want)
		}
	}
}

func TestGuardWithoutLimitAdmits(t *testing.T) {
	g := NewGuard(0, 0.8)
	g.read = func() uint64 { return 1 << 40 }
	g.Sample()
	if !g.Admit() {
		t.Error("a Guard without a limit refused a hold")
	}
}

// The real reading sees this process's own memory, and more of it after an allocation.
func TestInUse(t *testing.T) {
	before := inUse()
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = 1
	}
	after := inUse()
	if before == 0 || after < before+32<<20 {
		t.Errorf("in use %d then %d bytes around a 64 MiB allocation", before, after)
	}
	_ = buf[len(buf)-1]
}

func TestSetLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	var gib uint64 = 1 << 30
	if got, want := SetLimit(gib, 0.9, false), int64(float64(gib)*0.9); got != want {
		t.Errorf("SetLimit = %d, want 90%% of 1 GiB", got)
	}
	prev := debug.SetMemoryLimit(-1)
	if got := SetLimit(1<<20, 0.9, true); got != prev {
		t.Errorf("SetLimit with GOMEMLIMIT set = %d, want it left at %d", got, prev)
	}
}
