package activity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	activityv1 "github.com/elasti-dev/elasti/api/activity/v1"
	"github.com/elasti-dev/elasti/resolver/internal/metrics"
)

// Options configure a Client.
type Options struct {
	// ControllerURL is the controller's base URL; activityv1.Path is appended.
	ControllerURL string
	// TokenFile holds the bearer token; a missing file sends no Authorization header.
	TokenFile string
	// Timeout bounds each call. Default 2s.
	Timeout time.Duration
	// Backoff is the first retry delay, doubled up to MaxBackoff. Defaults 50ms and 5s.
	Backoff, MaxBackoff time.Duration
	// NotLeaderBackoff is the first retry delay after a replica that does not lead answered,
	// doubled up to NotLeaderMaxBackoff. Defaults 10ms and 250ms: such an answer costs the
	// replica nothing, and the retry's new connection may reach the leader, or one elected
	// meanwhile.
	NotLeaderBackoff, NotLeaderMaxBackoff time.Duration
	// Interval is the shortest time between two signals for a target. Default activityv1.Interval.
	Interval time.Duration
	// KeepAlive is the time between two keepalives, which keep a connection on the leader and
	// the token reviewed so that a wake's first signal pays neither; 0 sends none.
	KeepAlive time.Duration
	// Signals counts calls by kind and result; nil counts nothing.
	Signals *prometheus.CounterVec
	Log     logr.Logger
}

// Client sends activity signals.
type Client struct {
	o      Options
	url    string
	ping   string // the keepalive URL
	http   *http.Client
	tr     *http.Transport
	token  tokenFile
	ctx    context.Context // ends the held loops at shutdown
	mu     sync.Mutex
	held   map[types.NamespacedName]bool // a held loop runs for the key
	active sync.Map                      // types.NamespacedName -> *atomic.Int64, last send in unix nanos
	down   atomic.Bool                   // the last call failed; logged once per outage
}

// New returns a Client whose held loops end with ctx.
func New(ctx context.Context, o Options) *Client {
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Backoff == 0 {
		o.Backoff = 50 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.NotLeaderBackoff == 0 {
		o.NotLeaderBackoff = 10 * time.Millisecond
	}
	if o.NotLeaderMaxBackoff == 0 {
		o.NotLeaderMaxBackoff = 250 * time.Millisecond
	}
	if o.Interval == 0 {
		o.Interval = activityv1.Interval
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	base := strings.TrimSuffix(o.ControllerURL, "/")
	c := &Client{
		o:     o,
		url:   base + activityv1.Path,
		ping:  base + activityv1.KeepAlivePath,
		http:  &http.Client{Transport: tr, Timeout: o.Timeout},
		tr:    tr,
		token: tokenFile{path: o.TokenFile},
		ctx:   ctx,
		held:  map[types.NamespacedName]bool{},
	}
	if o.KeepAlive > 0 {
		go c.keepAlive()
	}
	return c
}

// keepAliveTries bounds the retries of one keepalive answered "not the leader": each lands on
// a new connection, which kube-proxy may send to another replica.
const keepAliveTries = 5

// keepAlive sends a keepalive every KeepAlive until ctx ends, retrying one answered by a
// standby so that the idle connection left for the next wake is the leader's. An idle
// connection also outlives the transport's idle timeout (90 s) only if it is used.
func (c *Client) keepAlive() {
	timer := time.NewTimer(c.o.KeepAlive)
	defer timer.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-timer.C:
		}
		backoff := c.o.NotLeaderBackoff
		for try := 1; ; try++ {
			result, err := c.post(c.ping, nil)
			if c.o.Signals != nil {
				c.o.Signals.WithLabelValues("keepalive", result).Inc()
			}
			if err == nil || result != metrics.ResultNotLeader || try == keepAliveTries {
				if err != nil {
					// Counted; a wake's own signals log an outage that matters to callers.
					c.o.Log.V(1).Info("keepalive not accepted", "error", err.Error())
				}
				break
			}
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, c.o.NotLeaderMaxBackoff)
		}
		timer.Reset(c.o.KeepAlive)
	}
}

// Held wakes the ElastiService now and keeps signalling, once per interval after a success and
// with backoff after a failure, for as long as stillHeld says requests wait. Calls while a loop
// runs for the key do nothing.
func (c *Client) Held(key types.NamespacedName, stillHeld func() bool) {
	c.mu.Lock()
	if c.held[key] {
		c.mu.Unlock()
		return
	}
	c.held[key] = true
	c.mu.Unlock()
	go c.holdLoop(key, stillHeld)
}

func (c *Client) holdLoop(key types.NamespacedName, stillHeld func() bool) {
	backoff, notLeader := c.o.Backoff, c.o.NotLeaderBackoff
	var notLeaderSince time.Time
	// A hold asks for a wake even when its caller leaves at once (one with a short timeout
	// retries, and must find the target starting): the loop stops only once a signal got
	// through, or after deliverPatience.
	delivered, start := false, time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		wait := c.o.Interval
		result, err := c.send(key, true)
		switch {
		case err == nil:
			backoff, notLeader, notLeaderSince = c.o.Backoff, c.o.NotLeaderBackoff, time.Time{}
			delivered = true
		case result == metrics.ResultNotLeader:
			// With several replicas this is the common case of a connection to a standby, or
			// an election under way; the short backoff bounds how late the new leader hears.
			wait, notLeader = notLeader, min(2*notLeader, c.o.NotLeaderMaxBackoff)
			if notLeaderSince.IsZero() {
				notLeaderSince = time.Now()
			} else if time.Since(notLeaderSince) >= notLeaderPatience {
				c.outage(err, key)
			}
		default:
			// A 429 says how long to wait; retrying sooner only adds to the controller's load.
			wait, backoff = max(backoff, retryAfter(err)), min(2*backoff, c.o.MaxBackoff)
		}
		timer.Reset(wait)
		select {
		case <-c.ctx.Done():
			c.mu.Lock()
			delete(c.held, key)
			c.mu.Unlock()
			return
		case <-timer.C:
		}
		// Deciding to stop under c.mu orders this against Held: a request held after this
		// check finds no loop and starts one.
		c.mu.Lock()
		if !stillHeld() && (delivered || time.Since(start) >= deliverPatience) {
			delete(c.held, key)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
}

// Active tells the controller the ElastiService has traffic, at most once per interval. It
// returns at once; the call runs in the background.
func (c *Client) Active(key types.NamespacedName) {
	v, ok := c.active.Load(key)
	if !ok {
		v, _ = c.active.LoadOrStore(key, new(atomic.Int64))
	}
	last := v.(*atomic.Int64)
	now := time.Now().UnixNano()
	prev := last.Load()
	if now-prev < int64(c.o.Interval) || !last.CompareAndSwap(prev, now) {
		return
	}
	go func() { _, _ = c.send(key, false) }()
}

// Forget drops the per-target state of a deleted ElastiService.
func (c *Client) Forget(key types.NamespacedName) { c.active.Delete(key) }

// deliverPatience bounds how long a hold's activity signal is retried once nothing is held.
const deliverPatience = 30 * time.Second

// notLeaderPatience is how long the held loop hears only "not the leader" before it logs an
// outage: a moment of it is a standby answering, or an election.
const notLeaderPatience = 10 * time.Second

func (c *Client) send(key types.NamespacedName, held bool) (string, error) {
	kind := "active"
	if held {
		kind = "held"
	}
	body, _ := json.Marshal(activityv1.Signal{Namespace: key.Namespace, Name: key.Name, Held: held})
	result, err := c.post(c.url, body)
	if c.o.Signals != nil {
		c.o.Signals.WithLabelValues(kind, result).Inc()
	}
	switch {
	case err == nil:
		if c.down.CompareAndSwap(true, false) {
			c.o.Log.Info("controller reachable again")
		}
	case result == metrics.ResultUnreachable:
		c.outage(err, key)
	case result == metrics.ResultNotLeader:
		// Logged by the held loop if it lasts; an active signal is sent again within a second.
	case result == metrics.ResultRateLimited:
		c.outage(err, key)
	default:
		c.o.Log.Error(err, "controller refused an activity signal", "elastiservice", key.String())
	}
	return result, err
}

// rateLimited is a 429 from the controller, which asks for no signal before after.
type rateLimited struct{ after time.Duration }

func (e *rateLimited) Error() string {
	return fmt.Sprintf("controller answered 429: too many signals from this address; retry after %s", e.after)
}

// retryAfter is how long a failed signal asks the held loop to wait at least: a 429's
// Retry-After, else nothing.
func retryAfter(err error) time.Duration {
	var rl *rateLimited
	if errors.As(err, &rl) {
		return rl.after
	}
	return 0
}

// outage logs, once until a signal is accepted again, that no signal gets through.
func (c *Client) outage(err error, key types.NamespacedName) {
	if c.down.CompareAndSwap(false, true) {
		c.o.Log.Error(err, "cannot signal the controller; held requests keep waiting until their hold timeout",
			"elastiservice", key.String())
	}
}

func (c *Client) post(url string, body []byte) (string, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return metrics.ResultUnreachable, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	token, err := c.token.read()
	if err != nil {
		return metrics.ResultRejected, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		// Its peer may be gone (a crashed replica): the next call dials afresh, and kube-proxy
		// picks a live replica, instead of trying another idle connection to the same pod.
		c.tr.CloseIdleConnections()
		return metrics.ResultUnreachable, err
	}
	if res.StatusCode == http.StatusServiceUnavailable {
		// Not the leader (or it could not review the token). Closing the body unread makes the
		// transport drop this connection, and closing the idle ones drops any other to the same
		// replica, so that the retry's new connection may reach another: kube-proxy balances
		// connections, not requests.
		_ = res.Body.Close()
		c.tr.CloseIdleConnections()
		return metrics.ResultNotLeader, errors.New("controller answered 503: not the leader")
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
	_ = res.Body.Close()
	switch res.StatusCode {
	case http.StatusAccepted, http.StatusOK, http.StatusNoContent:
		return metrics.ResultAccepted, nil
	case http.StatusTooManyRequests:
		secs, _ := strconv.Atoi(res.Header.Get("Retry-After"))
		return metrics.ResultRateLimited, &rateLimited{after: time.Duration(max(secs, 1)) * time.Second}
	}
	return metrics.ResultRejected, fmt.Errorf("controller answered %s", res.Status)
}

// tokenFile re-reads a projected token when the kubelet rotates it.
type tokenFile struct {
	path  string
	mu    sync.Mutex
	mtime time.Time
	size  int64
	token string
}

func (t *tokenFile) read() (string, error) {
	if t.path == "" {
		return "", nil
	}
	fi, err := os.Stat(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if fi.ModTime().Equal(t.mtime) && fi.Size() == t.size && t.token != "" {
		return t.token, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	t.token, t.mtime, t.size = strings.TrimSpace(string(b)), fi.ModTime(), fi.Size()
	return t.token, nil
}
