package v1alpha1

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestClaimsBefore(t *testing.T) {
	at := func(name string, sec int) *ElastiService {
		return &ElastiService{ObjectMeta: metav1.ObjectMeta{Name: name,
			CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, 0, sec, 0, time.UTC))}}
	}
	tests := map[string]struct {
		es, other *ElastiService
		want      bool
	}{
		"created first":                 {es: at("b", 1), other: at("a", 2), want: true},
		"created later":                 {es: at("a", 2), other: at("b", 1), want: false},
		"same second, name sorts first": {es: at("a", 1), other: at("b", 1), want: true},
		"same second, name sorts later": {es: at("b", 1), other: at("a", 1), want: false},
		"itself":                        {es: at("a", 1), other: at("a", 1), want: false},
		"prefix sorts first":            {es: at("web", 1), other: at("web-2", 1), want: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tt.es.ClaimsBefore(tt.other); got != tt.want {
				t.Errorf("ClaimsBefore = %v, want %v", got, tt.want)
			}
		})
	}
}
