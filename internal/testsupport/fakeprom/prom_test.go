package fakeprom

import (
	"context"
	"net/http"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// The answers are read back with Prometheus' own client, as the controller's trigger reads them.
func TestServer(t *testing.T) {
	s, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	c, err := promapi.NewClient(promapi.Config{Address: s.URL})
	if err != nil {
		t.Fatal(err)
	}
	api := promv1.NewAPI(c)
	query := func() (model.Vector, error) {
		v, _, _, err := api.Query(context.Background(), "up", time.Now())
		if err != nil {
			return nil, err
		}
		vec, ok := v.(model.Vector)
		if !ok {
			t.Fatalf("answer is a %s, want a vector", v.Type())
		}
		return vec, nil
	}

	if got, err := query(); err != nil || len(got) != 0 {
		t.Errorf("idle: %v, %v; want an empty vector", got, err)
	}

	s.Active.Store(true)
	before := time.Now()
	got, err := query()
	if err != nil || len(got) != 1 {
		t.Fatalf("active: %v, %v; want one sample", got, err)
	}
	if at := time.UnixMilli(int64(float64(got[0].Value) * 1000)); at.Before(before.Add(-time.Second)) || at.After(time.Now()) {
		t.Errorf("active sample's value is %v, want the time of the query", at)
	}

	s.Down.Store(true)
	if got, err := query(); err == nil {
		t.Errorf("down: %v, want an error", got)
	}

	s.Down.Store(false)
	resp, err := http.Get(s.URL + "/api/v1/series")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("another endpoint answered %d, want 503: the trigger asks only %s", resp.StatusCode, QueryPath)
	}
}
