package readiness

import (
	"slices"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

type listener []types.NamespacedName

func (l *listener) Changed(key types.NamespacedName) { *l = append(*l, key) }

func slice(name string, ready *bool, addrs ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: "app-elasti-private"}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ready}})
	}
	return s
}

// probed is the controller's slice of the probed Service, which counts for the private Service.
func probed(name string, addrs ...string) *discoveryv1.EndpointSlice {
	s := slice(name, ptr.To(true), addrs...)
	s.Labels = map[string]string{discoveryv1.LabelServiceName: "app-elasti-probed", v1alpha1.LabelProbedFor: "app-elasti-private"}
	return s
}

// terminating marks every endpoint of s as terminating.
func terminating(s *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	for i := range s.Endpoints {
		s.Endpoints[i].Conditions.Terminating = ptr.To(true)
	}
	return s
}

var key = types.NamespacedName{Namespace: "shop", Name: "app-elasti-private"}

func TestReadyTransitions(t *testing.T) {
	tests := map[string]struct {
		events         func(c *Cache)
		wantReady      bool
		wantProbedOnly bool
		wantChanges    int
	}{
		"no slice": {events: func(*Cache) {}},
		"ready true": {
			events: func(c *Cache) { c.Update(slice("a", ptr.To(true), "10.0.0.1")) }, wantReady: true, wantChanges: 1,
		},
		"ready nil counts as ready": {
			events: func(c *Cache) { c.Update(slice("a", nil, "10.0.0.1")) }, wantReady: true, wantChanges: 1,
		},
		"not ready": {
			events: func(c *Cache) { c.Update(slice("a", ptr.To(false), "10.0.0.1")) },
		},
		"no addresses": {
			events: func(c *Cache) { c.Update(slice("a", ptr.To(true))) },
		},
		"ready then lost": {
			events: func(c *Cache) {
				c.Update(slice("a", ptr.To(true), "10.0.0.1"))
				c.Update(slice("a", ptr.To(false), "10.0.0.1"))
			}, wantChanges: 2,
		},
		"ready then slice deleted": {
			events: func(c *Cache) {
				c.Update(slice("a", ptr.To(true), "10.0.0.1"))
				c.Delete(slice("a", nil))
			}, wantChanges: 2,
		},
		"one of two slices deleted": {
			events: func(c *Cache) {
				c.Update(slice("a", ptr.To(true), "10.0.0.1"))
				c.Update(slice("b", ptr.To(true), "10.0.0.2"))
				c.Delete(slice("a", nil))
			}, wantReady: true, wantChanges: 1,
		},
		// Such an endpoint's pod is shutting down (the Service publishes not-ready addresses):
		// opening the gate for it would replay held requests into the shutdown.
		"ready but terminating": {
			events: func(c *Cache) { c.Update(terminating(slice("a", ptr.To(true), "10.0.0.1"))) },
		},
		"ready, then terminating": {
			events: func(c *Cache) {
				c.Update(slice("a", ptr.To(true), "10.0.0.1"))
				c.Update(terminating(slice("a", ptr.To(true), "10.0.0.1")))
			}, wantChanges: 2,
		},
		"unlabelled slice ignored": {
			events: func(c *Cache) {
				s := slice("a", ptr.To(true), "10.0.0.1")
				s.Labels = nil
				c.Update(s)
			},
		},
		"probed pod opens the gate": {
			events: func(c *Cache) { c.Update(probed("p", "10.0.0.1")) }, wantReady: true, wantProbedOnly: true, wantChanges: 1,
		},
		"probed pod beside the kubelet's not-ready entry for it": {
			events: func(c *Cache) {
				c.Update(slice("a", ptr.To(false), "10.0.0.1"))
				c.Update(probed("p", "10.0.0.1"))
			}, wantReady: true, wantProbedOnly: true, wantChanges: 1,
		},
		"probed, then the kubelet marks it ready": {
			events: func(c *Cache) {
				c.Update(probed("p", "10.0.0.1"))
				c.Update(slice("a", ptr.To(true), "10.0.0.1"))
			}, wantReady: true, wantChanges: 1,
		},
		"probed slice deleted": {
			events: func(c *Cache) {
				c.Update(probed("p", "10.0.0.1"))
				c.Delete(probed("p"))
			}, wantChanges: 2,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var l listener
			c := New(&l)
			tc.events(c)
			if got := c.Ready(key); got != tc.wantReady {
				t.Errorf("Ready = %v, want %v", got, tc.wantReady)
			}
			if got := c.ProbedOnly(key); got != tc.wantProbedOnly {
				t.Errorf("ProbedOnly = %v, want %v", got, tc.wantProbedOnly)
			}
			if len(l) != tc.wantChanges {
				t.Errorf("listener called %d times, want %d", len(l), tc.wantChanges)
			}
		})
	}
}

func TestPickSpreadsAndMatchesPort(t *testing.T) {
	c := New(nil)
	c.Update(slice("a", ptr.To(true), "10.0.0.1", "10.0.0.2"))
	c.Update(slice("b", ptr.To(false), "10.0.0.3"))
	c.Update(terminating(slice("c", ptr.To(true), "10.0.0.4")))
	var got []string
	for range 4 {
		addr, ok := c.Pick(key, "http")
		if !ok {
			t.Fatal("Pick found no endpoint")
		}
		got = append(got, addr)
	}
	slices.Sort(got)
	want := []string{"10.0.0.1:8080", "10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.2:8080"}
	if !slices.Equal(got, want) {
		t.Errorf("picked %v, want %v", got, want)
	}
	// A single-port slice serves whatever the Service port is called.
	if addr, ok := c.Pick(key, "other"); !ok || addr == "" {
		t.Errorf("Pick with another port name = %q, %v; want an address", addr, ok)
	}
	if _, ok := c.Pick(types.NamespacedName{Namespace: "shop", Name: "none"}, "http"); ok {
		t.Error("Pick found an endpoint for an unknown Service")
	}
}
