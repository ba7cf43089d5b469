package main

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
)

func TestCheckLeaderElection(t *testing.T) {
	tests := map[string]struct {
		lease, renew, retry time.Duration
		wantErr             string // a substring; empty for none
	}{
		"defaults":                    {lease: 4 * time.Second, renew: 3 * time.Second, retry: time.Second},
		"client-go's defaults":        {lease: 15 * time.Second, renew: 10 * time.Second, retry: 2 * time.Second},
		"renew deadline equals lease": {lease: 3 * time.Second, renew: 3 * time.Second, retry: time.Second, wantErr: "--leader-elect-lease-duration (3s) must be more than"},
		"renew deadline above lease":  {lease: 2 * time.Second, renew: 3 * time.Second, retry: time.Second, wantErr: "--leader-elect-lease-duration"},
		"no room to retry a renewal":  {lease: 4 * time.Second, renew: 1200 * time.Millisecond, retry: time.Second, wantErr: "--leader-elect-renew-deadline (1.2s) must be more than 1.2 times"},
		"zero retry period":           {lease: 4 * time.Second, renew: 3 * time.Second, wantErr: "--leader-elect-retry-period must be positive"},
		"negative retry period":       {lease: 4 * time.Second, renew: 3 * time.Second, retry: -time.Second, wantErr: "--leader-elect-retry-period"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := checkLeaderElection(tc.lease, tc.renew, tc.retry)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// A lost Lease starts a new term in the same process; so does a failed start soon after it
// (the old manager's ports still bound); any other failure ends the process.
func TestStandByAfterALostLease(t *testing.T) {
	lost := errors.New(errLeaseLost)
	bind := errors.New("listen tcp :8081: bind: address already in use")
	for name, tc := range map[string]struct {
		results []error
		want    error
		terms   int
	}{
		"lost twice, then stopped":         {results: []error{lost, lost, nil}, want: nil, terms: 3},
		"lost, a failed rebind, then runs": {results: []error{lost, bind, nil}, want: nil, terms: 3},
		"a failure without a lost Lease":   {results: []error{bind}, want: bind, terms: 1},
	} {
		t.Run(name, func(t *testing.T) {
			var terms []int
			err := standBy(context.Background(), logr.Discard(), func(n int) error {
				terms = append(terms, n)
				return tc.results[n]
			})
			if !errors.Is(err, tc.want) {
				t.Errorf("standBy = %v, want %v", err, tc.want)
			}
			if len(terms) != tc.terms || terms[len(terms)-1] != tc.terms-1 {
				t.Errorf("terms = %v, want %d numbered from 0", terms, tc.terms)
			}
		})
	}
}

// --watch-namespaces=a, watched every namespace: the empty item became the cache's "" key.
func TestCacheOptions(t *testing.T) {
	tests := map[string]struct {
		watch        string
		wantNS       []string // nil: every namespace
		wantPolicyNS []string // nil: no restriction of its own
		wantErr      bool
	}{
		"empty watches all":  {watch: ""},
		"only a comma":       {watch: ","},
		"one":                {watch: "a", wantNS: []string{"a", "elasti-system"}, wantPolicyNS: []string{"a", "elasti-system", "istio-system"}},
		"trailing comma":     {watch: "a,", wantNS: []string{"a", "elasti-system"}, wantPolicyNS: []string{"a", "elasti-system", "istio-system"}},
		"spaces":             {watch: " a , b ", wantNS: []string{"a", "b", "elasti-system"}, wantPolicyNS: []string{"a", "b", "elasti-system", "istio-system"}},
		"duplicates":         {watch: "a,a,elasti-system", wantNS: []string{"a", "elasti-system"}, wantPolicyNS: []string{"a", "elasti-system", "istio-system"}},
		"not a namespace":    {watch: "a;b", wantErr: true},
		"upper case refused": {watch: "Shop", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := cacheOptions(tc.watch, "elasti-system", "istio-system")
			if (err != nil) != tc.wantErr {
				t.Fatalf("cacheOptions(%q) error = %v, want error %v", tc.watch, err, tc.wantErr)
			}
			if ns := slices.Sorted(maps.Keys(got.DefaultNamespaces)); !slices.Equal(ns, tc.wantNS) {
				t.Errorf("DefaultNamespaces = %q, want %q", ns, tc.wantNS)
			}
			var policyNS []string
			slim := 0
			for obj, by := range got.ByObject {
				switch obj.(type) {
				case *securityv1.AuthorizationPolicy:
					policyNS = slices.Sorted(maps.Keys(by.Namespaces))
				case *appsv1.Deployment, *appsv1.StatefulSet:
					if by.Transform != nil {
						slim++
					}
				}
			}
			if !tc.wantErr && slim != 2 {
				t.Errorf("%d of Deployments and StatefulSets are cached slim, want both", slim)
			}
			if !slices.Equal(policyNS, tc.wantPolicyNS) {
				t.Errorf("AuthorizationPolicy namespaces = %q, want %q", policyNS, tc.wantPolicyNS)
			}
		})
	}
}
