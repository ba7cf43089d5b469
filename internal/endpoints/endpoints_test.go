package endpoints

import (
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

func TestReady(t *testing.T) {
	tests := map[string]struct {
		ready, serving, terminating *bool
		want                        bool
	}{
		"unknown":                    {want: true},
		"ready":                      {ready: ptr.To(true), want: true},
		"not ready":                  {ready: ptr.To(false)},
		"ready, not terminating":     {ready: ptr.To(true), terminating: ptr.To(false), want: true},
		"ready but terminating":      {ready: ptr.To(true), terminating: ptr.To(true)},
		"unknown but terminating":    {terminating: ptr.To(true)},
		"not ready and terminating":  {ready: ptr.To(false), terminating: ptr.To(true)},
		"not ready, not terminating": {ready: ptr.To(false), terminating: ptr.To(false)},
		// A Service that publishes not-ready addresses marks every endpoint ready; serving is
		// its pod's readiness.
		"published but not serving": {ready: ptr.To(true), serving: ptr.To(false)},
		"published and serving":     {ready: ptr.To(true), serving: ptr.To(true), want: true},
		"serving but terminating":   {ready: ptr.To(false), serving: ptr.To(true), terminating: ptr.To(true)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ep := discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: tc.ready, Serving: tc.serving, Terminating: tc.terminating}}
			if got := Ready(ep); got != tc.want {
				t.Errorf("Ready = %v, want %v", got, tc.want)
			}
		})
	}
}
