package main

import (
	"strings"
	"testing"
	"time"
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
