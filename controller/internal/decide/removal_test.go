package decide

import (
	"testing"
	"time"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

func TestRemoval(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	base := RemovalInput{TargetExists: true, ReadyEndpoints: 1, Resolvers: 2, DeletedAt: now.Add(-time.Second),
		Mode: v1alpha1.ModeServe, ModeSince: now.Add(-time.Hour), DrainDelay: 5 * time.Second}
	tests := map[string]struct {
		change   func(*RemovalInput)
		want     RemovalStep
		wantWait time.Duration
	}{
		"serving for long: finish":             {change: func(*RemovalInput) {}, want: RemovalFinish},
		"woken, not ready: hold callers":       {change: func(in *RemovalInput) { in.ReadyEndpoints, in.Mode = 0, v1alpha1.ModeProxy }, want: RemovalAwaitTarget, wantWait: 5 * time.Second},
		"not ready, no resolver: restore now":  {change: func(in *RemovalInput) { in.ReadyEndpoints, in.Resolvers, in.Mode = 0, 0, v1alpha1.ModeProxy }, want: RemovalDrain, wantWait: 5 * time.Second},
		"not ready past the bound: restore":    {change: func(in *RemovalInput) { in.ReadyEndpoints, in.DeletedAt = 0, now.Add(-FinalizeWait) }, want: RemovalFinish},
		"target gone: nothing to wait for":     {change: func(in *RemovalInput) { in.TargetExists, in.ReadyEndpoints, in.Mode = false, 0, v1alpha1.ModeProxy }, want: RemovalDrain, wantWait: 5 * time.Second},
		"ready in Proxy: restore and drain":    {change: func(in *RemovalInput) { in.Mode = v1alpha1.ModeProxy }, want: RemovalDrain, wantWait: 5 * time.Second},
		"Serve recorded 2 s ago: drain on":     {change: func(in *RemovalInput) { in.ModeSince = now.Add(-2 * time.Second) }, want: RemovalDrain, wantWait: 4 * time.Second},
		"Serve recorded just now: whole delay": {change: func(in *RemovalInput) { in.ModeSince = now }, want: RemovalDrain, wantWait: 6 * time.Second},
		"drain over: finish":                   {change: func(in *RemovalInput) { in.ModeSince = now.Add(-6 * time.Second) }, want: RemovalFinish},
		"Serve without a time: drain":          {change: func(in *RemovalInput) { in.ModeSince = time.Time{} }, want: RemovalDrain, wantWait: 5 * time.Second},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := base
			tc.change(&in)
			step, wait := Removal(in, now)
			if step != tc.want || wait != tc.wantWait {
				t.Errorf("Removal = %v, %v; want %v, %v", step, wait, tc.want, tc.wantWait)
			}
		})
	}
}
