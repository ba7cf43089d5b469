package decide

import (
	"testing"
	"time"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const cooldown = 5 * time.Minute
	const drain = 10 * time.Second
	const wakeTimeout = 5 * time.Minute
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
		WakeTimeout:     wakeTimeout,
	}
	tests := map[string]struct {
		edit func(*Input)
		want Decision
	}{
		"active and ready serves and looks again when the cooldown ends": {
			edit: func(*Input) {},
			want: Decision{Mode: v1alpha1.ModeServe, RequeueAfter: 4 * time.Minute, Reason: v1alpha1.ReasonActive},
		},
		"a port that is not HTTP keeps an idle target in serve": {
			edit: func(in *Input) { in.Unsupported, in.LastActivity = v1alpha1.ReasonUnsupportedPort, now.Add(-time.Hour) },
			want: Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonUnsupportedPort},
		},
		"a port that is not HTTP never enters proxy, even with no ready endpoint": {
			edit: func(in *Input) { in.Unsupported, in.ReadyEndpoints = v1alpha1.ReasonUnsupportedPort, 0 },
			want: Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonUnsupportedPort},
		},
		"a port that is not HTTP found at zero wakes and holds in proxy until ready": {
			edit: func(in *Input) {
				in.Unsupported, in.Mode, in.Replicas, in.ReadyEndpoints = v1alpha1.ReasonUnsupportedPort, v1alpha1.ModeProxy, 0, 0
				in.LastActivity = now.Add(-time.Hour)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Scale: ScaleUp, Reason: v1alpha1.ReasonUnsupportedPort},
		},
		"a port that is not HTTP serves once the woken target is ready": {
			edit: func(in *Input) {
				in.Unsupported, in.Mode, in.WokeAt = v1alpha1.ReasonUnsupportedPort, v1alpha1.ModeProxy, now.Add(-time.Second)
			},
			want: Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonUnsupportedPort},
		},
		"a port that is not HTTP at zero with no resolver serves at once": {
			edit: func(in *Input) {
				in.Unsupported, in.Mode, in.Replicas, in.ReadyEndpoints, in.ResolverReady = v1alpha1.ReasonUnsupportedPort, v1alpha1.ModeProxy, 0, 0, false
			},
			want: Decision{Mode: v1alpha1.ModeServe, Scale: ScaleUp, Reason: v1alpha1.ReasonUnsupportedPort},
		},
		"an AuthorizationPolicy the resolver cannot enforce keeps an idle target in serve": {
			edit: func(in *Input) {
				in.Unsupported, in.LastActivity = v1alpha1.ReasonUnsupportedAuthorization, now.Add(-time.Hour)
			},
			want: Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonUnsupportedAuthorization},
		},
		"an AuthorizationPolicy the resolver cannot enforce wakes a target found at zero": {
			edit: func(in *Input) {
				in.Unsupported, in.Replicas, in.ReadyEndpoints = v1alpha1.ReasonUnsupportedAuthorization, 0, 0
				in.LastActivity = now.Add(-time.Hour)
			},
			want: Decision{Mode: v1alpha1.ModeServe, Scale: ScaleUp, Reason: v1alpha1.ReasonUnsupportedAuthorization},
		},
		"idle in serve switches to proxy first and keeps the replicas": {
			edit: func(in *Input) { in.LastActivity = now.Add(-cooldown) },
			want: Decision{Mode: v1alpha1.ModeProxy, RequeueAfter: drain, Reason: v1alpha1.ReasonIdle},
		},
		"idle for a new ElastiService switches to proxy first": {
			edit: func(in *Input) { in.Mode, in.ModeSince, in.LastActivity = "", time.Time{}, now.Add(-time.Hour) },
			want: Decision{Mode: v1alpha1.ModeProxy, RequeueAfter: drain, Reason: v1alpha1.ReasonIdle},
		},
		"idle in proxy but still draining waits": {
			edit: func(in *Input) {
				in.LastActivity, in.Mode, in.ModeSince = now.Add(-time.Hour), v1alpha1.ModeProxy, now.Add(-4*time.Second)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, RequeueAfter: 6 * time.Second, Reason: v1alpha1.ReasonDraining},
		},
		"idle in proxy after the drain delay scales to zero": {
			edit: func(in *Input) {
				in.LastActivity, in.Mode, in.ModeSince = now.Add(-time.Hour), v1alpha1.ModeProxy, now.Add(-drain)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Scale: ScaleToZero, Reason: v1alpha1.ReasonIdle},
		},
		"idle at zero stays put with no timer": {
			edit: func(in *Input) {
				in.LastActivity, in.Mode, in.Replicas, in.ReadyEndpoints = now.Add(-time.Hour), v1alpha1.ModeProxy, 0, 0
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonScaledToZero},
		},
		"activity at zero wakes the target and keeps proxy until it is ready": {
			edit: func(in *Input) { in.Mode, in.Replicas, in.ReadyEndpoints = v1alpha1.ModeProxy, 0, 0 },
			want: Decision{Mode: v1alpha1.ModeProxy, Scale: ScaleUp, RequeueAfter: 4 * time.Minute, Reason: v1alpha1.ReasonTargetNotReady},
		},
		"woken target with replicas but no ready endpoints stays in proxy": {
			edit: func(in *Input) { in.Mode, in.ReadyEndpoints = v1alpha1.ModeProxy, 0 },
			want: Decision{Mode: v1alpha1.ModeProxy, RequeueAfter: 4 * time.Minute, Reason: v1alpha1.ReasonTargetNotReady},
		},
		"ready endpoints after a wake switch back to serve": {
			edit: func(in *Input) { in.Mode = v1alpha1.ModeProxy },
			want: Decision{Mode: v1alpha1.ModeServe, RequeueAfter: 4 * time.Minute, Reason: v1alpha1.ReasonActive},
		},
		"no resolver never proxies, even when idle": {
			edit: func(in *Input) { in.ResolverReady, in.LastActivity = false, now.Add(-time.Hour) },
			want: Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonNoResolverReady},
		},
		"no resolver at zero fails open by scaling up": {
			edit: func(in *Input) {
				in.ResolverReady, in.Mode, in.Replicas, in.ReadyEndpoints = false, v1alpha1.ModeProxy, 0, 0
			},
			want: Decision{Mode: v1alpha1.ModeServe, Scale: ScaleUp, Reason: v1alpha1.ReasonNoResolverReady},
		},
		"unreadable triggers never count as idle": {
			edit: func(in *Input) { in.TriggersHealthy, in.LastActivity = false, now.Add(-time.Hour) },
			want: Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonActive},
		},
		"unreadable triggers at zero with activity still wake": {
			edit: func(in *Input) {
				in.TriggersHealthy, in.Mode, in.Replicas, in.ReadyEndpoints = false, v1alpha1.ModeProxy, 0, 0
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Scale: ScaleUp, Reason: v1alpha1.ReasonTargetNotReady},
		},
		"woken in this proxy period and not ready within the wake timeout waits, however idle": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.ReadyEndpoints = v1alpha1.ModeProxy, now.Add(-time.Hour), 0
				in.WokeAt, in.LastActivity, in.Cooldown = now.Add(-2*time.Minute), now.Add(-2*time.Minute), time.Minute
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonWaking, RequeueAfter: 3 * time.Minute},
		},
		"woken and not ready past the wake timeout fails, and goes to zero once idle": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.ReadyEndpoints = v1alpha1.ModeProxy, now.Add(-time.Hour), 0
				in.WokeAt, in.LastActivity = now.Add(-10*time.Minute), now.Add(-10*time.Minute)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Scale: ScaleToZero, Reason: v1alpha1.ReasonWakeFailed, RecordWakeFailure: true},
		},
		"a failed wake with requests still held stays up until the cooldown after the last signal": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.ReadyEndpoints = v1alpha1.ModeProxy, now.Add(-time.Hour), 0
				in.WokeAt, in.LastActivity = now.Add(-wakeTimeout), now.Add(-time.Second)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonWakeFailed, RecordWakeFailure: true, RequeueAfter: cooldown - time.Second},
		},
		"a failed wake already recorded is not recorded again": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.ReadyEndpoints = v1alpha1.ModeProxy, now.Add(-time.Hour), 0
				in.WokeAt, in.LastActivity, in.WakeFailedAt = now.Add(-6*time.Minute), now.Add(-2*time.Minute), now.Add(-time.Minute)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonWakeFailed, RequeueAfter: 3 * time.Minute},
		},
		"a failed wake with a cooldown shorter than the held silence waits for the silence": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.ReadyEndpoints, in.Cooldown = v1alpha1.ModeProxy, now.Add(-time.Hour), 0, time.Second
				in.WokeAt, in.LastActivity = now.Add(-wakeTimeout), now.Add(-2*time.Second)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonWakeFailed, RecordWakeFailure: true, RequeueAfter: HeldSilence - 2*time.Second},
		},
		"a failed wake is not taken to zero while a trigger cannot be read": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.ReadyEndpoints, in.TriggersHealthy = v1alpha1.ModeProxy, now.Add(-time.Hour), 0, false
				in.WokeAt, in.LastActivity = now.Add(-10*time.Minute), now.Add(-10*time.Minute)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonWakeFailed, RecordWakeFailure: true},
		},
		"a failed wake waits out the drain delay when Proxy is younger than it": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.ReadyEndpoints = v1alpha1.ModeProxy, now.Add(-wakeTimeout-time.Minute-4*time.Second), 0
				in.Cooldown, in.DrainDelay = time.Minute, wakeTimeout+time.Minute+10*time.Second
				in.WokeAt, in.LastActivity = now.Add(-wakeTimeout-time.Minute), now.Add(-wakeTimeout-time.Minute)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonWakeFailed, RecordWakeFailure: true, RequeueAfter: 6 * time.Second},
		},
		"at zero after a failed wake it still says WakeFailed": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.Replicas, in.ReadyEndpoints = v1alpha1.ModeProxy, now.Add(-time.Hour), 0, 0
				in.WokeAt, in.WakeFailedAt, in.LastActivity = now.Add(-20*time.Minute), now.Add(-15*time.Minute), now.Add(-20*time.Minute)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonWakeFailed},
		},
		"a request after a failed wake wakes the target again, still WakeFailed": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.Replicas, in.ReadyEndpoints = v1alpha1.ModeProxy, now.Add(-time.Hour), 0, 0
				in.WokeAt, in.WakeFailedAt, in.LastActivity = now.Add(-20*time.Minute), now.Add(-15*time.Minute), now
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Scale: ScaleUp, Reason: v1alpha1.ReasonWakeFailed, RequeueAfter: cooldown},
		},
		"waking again after a failed wake stays WakeFailed until the timeout": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.ReadyEndpoints = v1alpha1.ModeProxy, now.Add(-time.Hour), 0
				in.WokeAt, in.WakeFailedAt, in.LastActivity = now.Add(-time.Minute), now.Add(-15*time.Minute), now
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonWakeFailed, RequeueAfter: wakeTimeout - time.Minute},
		},
		"waking again after a failed wake fails again and is recorded again": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.ReadyEndpoints = v1alpha1.ModeProxy, now.Add(-time.Hour), 0
				in.WokeAt, in.WakeFailedAt, in.LastActivity = now.Add(-wakeTimeout), now.Add(-15*time.Minute), now.Add(-wakeTimeout)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Scale: ScaleToZero, Reason: v1alpha1.ReasonWakeFailed, RecordWakeFailure: true},
		},
		"a retry that becomes ready serves and ends the failure": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince = v1alpha1.ModeProxy, now.Add(-time.Hour)
				in.WokeAt, in.WakeFailedAt, in.LastActivity = now.Add(-time.Minute), now.Add(-15*time.Minute), now.Add(-time.Minute)
			},
			want: Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonWoken, RequeueAfter: 4 * time.Minute},
		},
		"a failure from before the last switch to Proxy no longer counts": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.Replicas, in.ReadyEndpoints = v1alpha1.ModeProxy, now.Add(-time.Hour), 0, 0
				in.WokeAt, in.WakeFailedAt, in.LastActivity = now.Add(-3*time.Hour), now.Add(-2*time.Hour), now.Add(-2*time.Hour)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonScaledToZero},
		},
		"woken in this proxy period and ready serves even when idle again": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince = v1alpha1.ModeProxy, now.Add(-time.Hour)
				in.WokeAt, in.LastActivity = now.Add(-10*time.Minute), now.Add(-10*time.Minute)
			},
			want: Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonWoken, RequeueAfter: drain},
		},
		"woken in an earlier period and idle again drains as usual": {
			edit: func(in *Input) {
				in.Mode, in.ModeSince, in.ReadyEndpoints = v1alpha1.ModeProxy, now.Add(-time.Hour), 0
				in.WokeAt, in.LastActivity = now.Add(-2*time.Hour), now.Add(-2*time.Hour)
			},
			want: Decision{Mode: v1alpha1.ModeProxy, Scale: ScaleToZero, Reason: v1alpha1.ReasonIdle},
		},
		"activity during the drain cancels the scale-down": {
			edit: func(in *Input) { in.Mode, in.ModeSince = v1alpha1.ModeProxy, now.Add(-time.Hour) },
			want: Decision{Mode: v1alpha1.ModeServe, RequeueAfter: 4 * time.Minute, Reason: v1alpha1.ReasonActive},
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

func TestDecisionReady(t *testing.T) {
	tests := map[string]struct {
		reason string
		want   bool
	}{
		"a failed wake is not ready":       {reason: v1alpha1.ReasonWakeFailed, want: false},
		"waking is ready":                  {reason: v1alpha1.ReasonWaking, want: true},
		"at zero is ready":                 {reason: v1alpha1.ReasonScaledToZero, want: true},
		"a port kept awake is not ready":   {reason: v1alpha1.ReasonUnsupportedPort, want: false},
		"a policy kept awake is not ready": {reason: v1alpha1.ReasonUnsupportedAuthorization, want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := (Decision{Reason: tc.reason}).Ready(); got != tc.want {
				t.Errorf("Ready() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAskTriggers(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		replicas int32
		idle     time.Duration
		want     bool
	}{
		"up and idle for the whole cooldown": {replicas: 1, idle: time.Minute, want: true},
		"up and idle for longer":             {replicas: 3, idle: time.Hour, want: true},
		"up and in use within the cooldown":  {replicas: 1, idle: 59 * time.Second, want: false},
		"at zero: nothing to ask about":      {replicas: 0, idle: time.Hour, want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := AskTriggers(tc.replicas, now.Add(-tc.idle), time.Minute, now); got != tc.want {
				t.Errorf("AskTriggers() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRequeueAfter(t *testing.T) {
	d := Decision{RequeueAfter: 4 * time.Minute}
	if got := RequeueAfter(d, false, 30*time.Second); got != 4*time.Minute {
		t.Errorf("with healthy triggers RequeueAfter() = %s, want the decision's 4m", got)
	}
	if got := RequeueAfter(d, true, 30*time.Second); got != 30*time.Second {
		t.Errorf("with failed triggers RequeueAfter() = %s, want the retry 30s", got)
	}
	if got := RequeueAfter(Decision{}, true, 30*time.Second); got != 30*time.Second {
		t.Errorf("a decision without a requeue still retries failed triggers: got %s", got)
	}
}

func TestPrepare(t *testing.T) {
	proxy := Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonIdle, RequeueAfter: 5 * time.Second}
	tests := map[string]struct {
		d       Decision
		current v1alpha1.Mode
		made    time.Duration
		want    Decision
	}{
		"proxy Service just made: callers stay on the target": {proxy, v1alpha1.ModeServe, 0,
			Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonIdle, RequeueAfter: PrepareDelay}},
		"made a second ago: the rest of the delay": {proxy, v1alpha1.ModeServe, time.Second,
			Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonIdle, RequeueAfter: PrepareDelay - time.Second}},
		"a new ElastiService for a target at zero is woken meanwhile": {
			Decision{Mode: v1alpha1.ModeProxy, Reason: v1alpha1.ReasonTargetNotReady, Scale: ScaleUp}, "", 0,
			Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonTargetNotReady, Scale: ScaleUp, RequeueAfter: PrepareDelay}},
		"a sooner requeue stays": {Decision{Mode: v1alpha1.ModeProxy, RequeueAfter: 100 * time.Millisecond}, v1alpha1.ModeServe, 0,
			Decision{Mode: v1alpha1.ModeServe, RequeueAfter: 100 * time.Millisecond}},
		"made long enough ago": {proxy, v1alpha1.ModeServe, PrepareDelay, proxy},
		"already in Proxy":     {proxy, v1alpha1.ModeProxy, 0, proxy},
		"Serve is not held":    {Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonActive}, v1alpha1.ModeProxy, 0, Decision{Mode: v1alpha1.ModeServe, Reason: v1alpha1.ReasonActive}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Prepare(tc.d, tc.current, tc.made); got != tc.want {
				t.Errorf("Prepare() = %+v, want %+v", got, tc.want)
			}
		})
	}
}
