package decide

import (
	"strings"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestWakeFailureCause(t *testing.T) {
	pod := func(name string, edit func(*corev1.PodStatus)) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
		edit(&p.Status)
		return p
	}
	waiting := func(reason, message string) func(*corev1.PodStatus) {
		return func(s *corev1.PodStatus) {
			s.Phase = corev1.PodPending
			s.ContainerStatuses = []corev1.ContainerStatus{{Name: "app",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}}}
		}
	}
	crashLoop := func(s *corev1.PodStatus) {
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", RestartCount: 4,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
				Message: "back-off 40s restarting failed container=app pod=web-1"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}}}
	}
	notReady := func(s *corev1.PodStatus) {
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		s.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"}}
	}
	tests := map[string]struct {
		want, have int32
		pods       []corev1.Pod
		expect     string
	}{
		"pods not read: only what /scale says": {
			want: 1, have: 0, pods: nil,
			expect: "/scale: 0 of 1 replicas exist, none ready",
		},
		"no pods at all": {
			want: 2, have: 0, pods: []corev1.Pod{},
			expect: "/scale: 0 of 2 replicas exist, none ready; no pod of the Service's selector is starting",
		},
		"a crash loop names the last exit": {
			want: 1, have: 1, pods: []corev1.Pod{pod("web-1", crashLoop)},
			expect: "/scale: 1 of 1 replicas exist, none ready; pod web-1: container app waiting: CrashLoopBackOff (last exit code 1, Error)",
		},
		"an image that cannot be pulled says which": {
			want: 1, have: 1, pods: []corev1.Pod{pod("web-1", waiting("ImagePullBackOff", `Back-off pulling image "web:nope"`))},
			expect: `/scale: 1 of 1 replicas exist, none ready; pod web-1: container app waiting: ImagePullBackOff: Back-off pulling image "web:nope"`,
		},
		"a readiness probe that never passes": {
			want: 1, have: 1, pods: []corev1.Pod{pod("web-1", notReady)},
			expect: "/scale: 1 of 1 replicas exist, none ready; pod web-1: container app running but not ready (readiness probe failing)",
		},
		"a startup probe not passed yet": {
			want: 1, have: 1, pods: []corev1.Pod{pod("web-1", func(s *corev1.PodStatus) {
				notReady(s)
				s.ContainerStatuses[0].Started = ptr.To(false)
			})},
			expect: "/scale: 1 of 1 replicas exist, none ready; pod web-1: container app running, startup probe not passed",
		},
		"unschedulable": {
			want: 1, have: 1, pods: []corev1.Pod{pod("web-1", func(s *corev1.PodStatus) {
				s.Phase = corev1.PodPending
				s.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
					Reason: "Unschedulable", Message: "0/3 nodes are available: 3 Insufficient memory."}}
			})},
			expect: "/scale: 1 of 1 replicas exist, none ready; pod web-1: not scheduled: 0/3 nodes are available: 3 Insufficient memory.",
		},
		"a failing init container comes before the app's": {
			want: 1, have: 1, pods: []corev1.Pod{pod("web-1", func(s *corev1.PodStatus) {
				waiting("PodInitializing", "")(s)
				s.InitContainerStatuses = []corev1.ContainerStatus{
					{Name: "done", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}},
					{Name: "migrate", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}}},
				}
			})},
			expect: "/scale: 1 of 1 replicas exist, none ready; pod web-1: init container migrate exited with code 2: Error",
		},
		"pods with the same cause are told once, sorted, and terminating ones are left out": {
			want: 3, have: 3, pods: []corev1.Pod{
				pod("web-c", crashLoop), pod("web-a", crashLoop), pod("web-b", notReady),
				func() corev1.Pod {
					p := pod("web-0", waiting("ErrImagePull", "gone"))
					p.DeletionTimestamp = &metav1.Time{}
					return p
				}(),
			},
			expect: "/scale: 3 of 3 replicas exist, none ready; pod web-a and 1 more: container app waiting: CrashLoopBackOff (last exit code 1, Error); " +
				"pod web-b: container app running but not ready (readiness probe failing)",
		},
		"a ready pod that is no ready endpoint points at the Service": {
			want: 1, have: 1, pods: []corev1.Pod{pod("web-1", func(s *corev1.PodStatus) {
				s.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Ready: true,
					State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
				s.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
			})},
			expect: "/scale: 1 of 1 replicas exist, none ready; pod web-1: ready, but not a ready endpoint of the Service: check the Service's ports",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := WakeFailureCause(tc.want, tc.have, tc.pods); got != tc.expect {
				t.Errorf("WakeFailureCause() = %q, want %q", got, tc.expect)
			}
		})
	}
}

func TestWakeFailureCauseIsBounded(t *testing.T) {
	var pods []corev1.Pod
	for i := range 50 {
		pods = append(pods, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-" + strings.Repeat("x", i)},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull",
					Message: strings.Repeat("é", 200) + strings.Repeat("x", i)}}}}}})
	}
	got := WakeFailureCause(50, 50, pods)
	if len(got) > maxCause {
		t.Errorf("len(WakeFailureCause()) = %d, want at most %d", len(got), maxCause)
	}
	if !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "/scale: 50 of 50") {
		t.Errorf("WakeFailureCause() = %q, want the /scale prefix and a marked cut", got)
	}
	if !utf8.ValidString(got) {
		t.Errorf("WakeFailureCause() cut a rune: %q", got)
	}
}
