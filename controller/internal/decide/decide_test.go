package decide

import (
	"testing"
	"time"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const cooldown = 5 * time.Minute
	const drain = 10 * time.Second
	base := Input{
		Mode:            v1alpha1.ModeServe,
		ModeSince:       now.Add(-time.Hour),
		Replicas:        1,
		ReadyEndpoints:  1,
		ResolverReady:   true,
		LastActivity:    now.Add(-time.Minute),
		TriggersHealthy: true,
		Cooldown:        cooldown,
		DrainDelay:      drain,
	}
	tests := map[string]struct {
		edit func(*Input)
		want Decision
	}{
		"active and ready serves and looks again when the cooldown ends": {
			edit: func(*Input) {},
			want: Decision{Mode: v1alpha1.ModeServe, RequeueAfter: 4 * time.Minute, Reason: "Active"},
		},
		"idle in serve switches to proxy first and keeps the replicas": {
			edit: func(in *Input) { in.LastActivity = now.Add(-cooldown) },
			want: Decision{Mode: v1alpha1.ModeProxy, RequeueAfter: drain, Reason: "Idle"},
		},
		"idle for a new ElastiService switches to proxy first": {
			edit: func(in *Input) { in.Mode, in.ModeSince, in.LastActivity = "", time.Time{}, now.Add(-time.Hour) },
			want: Decision{Mode: v1alpha1.ModeProxy, RequeueAfter: drain, Reason: "Idle"},
		},
		"idle in proxy but still draining waits": {
			edit: func(in *Input) {
				in.LastActivity, in.Mode, in.ModeSince = now.Add(-time.Hour), v1alpha1.ModeProxy, now.Add(-4*time.Second)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, RequeueAfter: 6 * time.Second, Reason: "Draining"},
		},
		"idle in proxy after the drain delay scales to zero": {
			edit: func(in *Input) {
				in.LastActivity, in.Mode, in.ModeSince = now.Add(-time.Hour), v1alpha1.ModeProxy, now.Add(-drain)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Scale: ScaleToZero, Reason: "Idle"},
		},
		"idle at zero stays put with no timer": {
			edit: func(in *Input) {
				in.LastActivity, in.Mode, in.Replicas, in.ReadyEndpoints = now.Add(-time.Hour), v1alpha1.ModeProxy, 0, 0
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Reason: "ScaledToZero"},
		},
		"activity at zero wakes the target and keeps proxy until it is ready": {
			edit: func(in *Input) { in.Mode, in.Replicas, in.ReadyEndpoints = v1alpha1.ModeProxy, 0, 0 },
			want: Decision{Mode: v1alpha1.ModeProxy, Scale: ScaleUp, RequeueAfter: 4 * time.Minute, Reason: "TargetNotReady"},
		},
		"woken target with replicas but no ready endpoints stays in proxy": {
			edit: func(in *Input) { in.Mode, in.ReadyEndpoints = v1alpha1.ModeProxy, 0 },
			want: Decision{Mode: v1alpha1.ModeProxy, RequeueAfter: 4 * time.Minute, Reason: "TargetNotReady"},
		},
		"ready endpoints after a wake switch back to serve": {
			edit: func(in *Input) { in.Mode = v1alpha1.ModeProxy },
			want: Decision{Mode: v1alpha1.ModeServe, RequeueAfter: 4 * time.Minute, Reason: "Active"},
		},
		"no resolver never proxies, even when idle": {
			edit: func(in *Input) { in.ResolverReady, in.LastActivity = false, now.Add(-time.Hour) },
			want: Decision{Mode: v1alpha1.ModeServe, Reason: "NoResolverReady"},
		},
		"no resolver at zero fails open by scaling up": {
			edit: func(in *Input) {
				in.ResolverReady, in.Mode, in.Replicas, in.ReadyEndpoints = false, v1alpha1.ModeProxy, 0, 0
			},
			want: Decision{Mode: v1alpha1.ModeServe, Scale: ScaleUp, Reason: "NoResolverReady"},
		},
		"unreadable triggers never count as idle": {
			edit: func(in *Input) { in.TriggersHealthy, in.LastActivity = false, now.Add(-time.Hour) },
			want: Decision{Mode: v1alpha1.ModeServe, Reason: "Active"},
		},
		"unreadable triggers at zero with activity still wake": {
			edit: func(in *Input) {
				in.TriggersHealthy, in.Mode, in.Replicas, in.ReadyEndpoints = false, v1alpha1.ModeProxy, 0, 0
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Scale: ScaleUp, Reason: "TargetNotReady"},
		},
		"woken in this proxy period and not ready yet is never taken back to zero": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.ReadyEndpoints = v1alpha1.ModeProxy, now.Add(-time.Hour), 0
				in.WokeAt, in.LastActivity = now.Add(-10*time.Minute), now.Add(-10*time.Minute)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Reason: "Waking"},
		},
		"woken in this proxy period and ready serves even when idle again": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince = v1alpha1.ModeProxy, now.Add(-time.Hour)
				in.WokeAt, in.LastActivity = now.Add(-10*time.Minute), now.Add(-10*time.Minute)
			},
			want: Decision{Mode: v1alpha1.ModeServe, Reason: "Woken", RequeueAfter: drain},
		},
		"woken in an earlier period and idle again drains as usual": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.ReadyEndpoints = v1alpha1.ModeProxy, now.Add(-time.Hour), 0
				in.WokeAt, in.LastActivity = now.Add(-2*time.Hour), now.Add(-2*time.Hour)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Scale: ScaleToZero, Reason: "Idle"},
		},
		"activity during the drain cancels the scale-down": {
			edit: func(in *Input) { in.Mode, in.ModeSince = v1alpha1.ModeProxy, now.Add(-time.Hour) },
			want: Decision{Mode: v1alpha1.ModeServe, RequeueAfter: 4 * time.Minute, Reason: "Active"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := base
			tc.edit(&in)
			if got := Decide(in, now); got != tc.want {
				t.Errorf("Decide() = %+v, want %+v", got, tc.want)
			}
		})
	}
}
