package decide

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
)

// maxCause bounds WakeFailureCause: an events.k8s.io note holds at most 1 kB, with a prefix.
const maxCause = 640

// maxDetail bounds one message that Kubernetes wrote, such as an image pull error.
const maxDetail = 160

// WakeFailureCause says in one line why a woken target has no ready endpoint, from what
// Kubernetes reports: the replicas /scale asks for and sees (want, have), and the pods' status.
// pods is nil when they could not be read. Pods with the same cause are told once.
func WakeFailureCause(want, have int32, pods []corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "/scale: %d of %d replicas exist, none ready", have, want)
	if pods == nil {
		return b.String()
	}
	pods = slices.Clone(pods)
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	var causes []string
	who := map[string][]string{}
	for i := range pods {
		c := podCause(&pods[i])
		if c == "" {
			continue
		}
		if _, ok := who[c]; !ok {
			causes = append(causes, c)
		}
		who[c] = append(who[c], pods[i].Name)
	}
	if len(causes) == 0 {
		b.WriteString("; no pod of the Service's selector is starting")
		return b.String()
	}
	for _, c := range causes {
		names := who[c]
		fmt.Fprintf(&b, "; pod %s", names[0])
		if len(names) > 1 {
			fmt.Fprintf(&b, " and %d more", len(names)-1)
		}
		b.WriteString(": " + c)
	}
	return truncate(b.String(), maxCause)
}

// podCause names the first thing that keeps a pod from being ready, or "" for a pod on its way
// out, which no wake waits for.
func podCause(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded {
		return ""
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return "not scheduled: " + detail(c.Reason, c.Message)
		}
	}
	for _, s := range p.Status.InitContainerStatuses {
		if c := containerCause("init container", s, true); c != "" {
			return c
		}
	}
	for _, s := range p.Status.ContainerStatuses {
		if c := containerCause("container", s, false); c != "" {
			return c
		}
	}
	if p.Status.Phase == corev1.PodFailed {
		return "failed: " + detail(p.Status.Reason, p.Status.Message)
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			// Kubernetes sees it ready, yet the private Service has no ready endpoint for it.
			return "ready, but not a ready endpoint of the Service: check the Service's ports"
		}
	}
	if len(p.Status.ContainerStatuses) == 0 {
		return "pending: no container has started"
	}
	return "not ready"
}

// containerCause says why one container holds its pod back, or "" when it does not. An init
// container holds it back until it has exited with 0; a container until it is ready.
func containerCause(kind string, s corev1.ContainerStatus, init bool) string {
	name := kind + " " + s.Name
	switch st := s.State; {
	case st.Waiting != nil:
		// Even ContainerCreating is named: a wake stuck there for the whole timeout is stuck.
		c := name + " waiting: " + st.Waiting.Reason
		if st.Waiting.Reason == "CrashLoopBackOff" {
			// Its message only repeats the back-off; how the last run ended says more.
			if t := s.LastTerminationState.Terminated; t != nil {
				c += fmt.Sprintf(" (last exit code %d%s)", t.ExitCode, orEmpty(", ", t.Reason))
			}
			return c
		}
		return c + orEmpty(": ", truncate(st.Waiting.Message, maxDetail))
	case st.Terminated != nil:
		if init && st.Terminated.ExitCode == 0 {
			return ""
		}
		return fmt.Sprintf("%s exited with code %d%s", name, st.Terminated.ExitCode, orEmpty(": ", st.Terminated.Reason))
	case st.Running != nil:
		if init {
			return name + " still running"
		}
		if s.Ready {
			return ""
		}
		if s.Started != nil && !*s.Started {
			return name + " running, startup probe not passed"
		}
		return name + " running but not ready (readiness probe failing)"
	}
	return ""
}

func detail(reason, message string) string {
	if message == "" {
		return reason
	}
	return truncate(message, maxDetail)
}

func orEmpty(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// truncate cuts s to at most n bytes, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
