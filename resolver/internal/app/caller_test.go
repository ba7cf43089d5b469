package app_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/elasti-dev/elasti/resolver/internal/app"
)

// rawRequest opens a connection to the resolver and writes head and then body, as a caller
// that may leave half-way would.
func rawRequest(t *testing.T, addr, head, body string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := io.WriteString(c, head+body); err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn)
}

func post(id string, length int) string {
	return fmt.Sprintf("POST /?id=%s HTTP/1.1\r\nHost: app.shop\r\nContent-Length: %d\r\n\r\n", id, length)
}

// waitFree waits, boundedly, until fewer than n requests are held.
func (h *harness) waitFree(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for h.Throttler.Pending(h.key) >= n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests still held after %v, want fewer than %d: a caller that left kept its slot", h.Throttler.Pending(h.key), within, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A held request whose caller leaves frees its slot at once and is never replayed: with or
// without a body, by FIN or by RST, over HTTP/1.1 and HTTP/2.
func TestCallerThatLeavesIsNotReplayed(t *testing.T) {
	large := strings.Repeat("x", 100<<10) // beyond MaxHeldBody: only the check before the replay sees it
	tests := map[string]struct {
		head, body string
		reset      bool
		freedWhile bool // the slot is freed while the target is still away
	}{
		"GET, FIN":               {head: "GET /?id=x HTTP/1.1\r\nHost: app.shop\r\n\r\n", freedWhile: true},
		"POST whole body, FIN":   {head: post("x", 4), body: "body", freedWhile: true},
		"POST whole body, RST":   {head: post("x", 4), body: "body", reset: true, freedWhile: true},
		"POST half a body, FIN":  {head: post("x", 100), body: "only ten..", freedWhile: true},
		"POST half a body, RST":  {head: post("x", 100), body: "only ten..", reset: true, freedWhile: true},
		"POST large body, FIN":   {head: post("x", len(large)+1), body: large},
		"POST chunked body, FIN": {head: "POST /?id=x HTTP/1.1\r\nHost: app.shop\r\nTransfer-Encoding: chunked\r\n\r\n", body: "4\r\nbody\r\n0\r\n\r\n", freedWhile: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			backend, counts := countingBackend(t)
			h := newHarness(t, backend)
			c := rawRequest(t, h.addr, tc.head, tc.body)
			h.waitPending(t, 1)
			if tc.reset {
				_ = c.SetLinger(0)
			}
			_ = c.Close()
			if tc.freedWhile {
				h.waitFree(t, 1, 5*time.Second)
			}
			h.wakeAndCheckNotReplayed(t, counts)
		})
	}
}

// wakeAndCheckNotReplayed makes the target ready and checks that request "x", whose caller
// left, never reached it.
func (h *harness) wakeAndCheckNotReplayed(t *testing.T, counts func() map[string]int) {
	t.Helper()
	h.setReady(true)
	h.waitFree(t, 1, 5*time.Second)
	// A replay, had there been one, would have reached the backend by the time a request sent
	// after it is answered.
	res, err := h.client.Get("http://app.shop/?id=after")
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if got := counts()["x"]; got != 0 {
		t.Errorf("the request of a caller that left reached the target %d times, want 0", got)
	}
}

func TestHTTP2CallerThatLeavesIsNotReplayed(t *testing.T) {
	backend, counts := countingBackend(t)
	h := newHarness(t, backend)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, h.addr)
	}}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge: HTTP/2 alone
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://app.shop/?id=x", strings.NewReader("body"))
		if res, err := client.Do(req); err == nil {
			_ = res.Body.Close()
		}
	}()
	h.waitPending(t, 1)
	cancel() // RST_STREAM
	<-done
	h.waitFree(t, 1, 5*time.Second)
	h.wakeAndCheckNotReplayed(t, counts)
}

// A caller that trickles its body cannot keep the one connection to the target busy: other
// callers are answered, whether the trickle came in warm or was held.
func TestSlowBodyDoesNotBlockTheTarget(t *testing.T) {
	for _, tc := range []struct{ held, stall bool }{{false, false}, {true, false}, {false, true}} {
		held := tc.held
		t.Run(fmt.Sprintf("held=%v,stall=%v", tc.held, tc.stall), func(t *testing.T) {
			backend := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				_, _ = io.WriteString(w, "ok")
			}))
			h := newHarnessWith(t, backend, func(o *app.Options) {
				o.Proxy.MaxConnsPerHost = 1
				o.MinBodyRate, o.BodyGrace = 1024, 300*time.Millisecond
				o.HoldTimeout = 2 * time.Second
			})
			if !held {
				h.setReady(true)
			}
			c := rawRequest(t, h.addr, post("slow", 1000), "")
			stop := make(chan struct{})
			defer close(stop)
			go func() { // 2 bytes every 100 ms: 20 B/s, for at most 10 s; or nothing at all
				for i := 0; i < 100 && !tc.stall; i++ {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
					if _, err := io.WriteString(c, "ab"); err != nil {
						return
					}
				}
			}()
			if held {
				h.waitPending(t, 1)
				h.setReady(true)
			}
			start := time.Now()
			client := &http.Client{Transport: h.client.Transport, Timeout: 5 * time.Second}
			res, err := client.Get("http://app.shop/?id=fast")
			if err != nil {
				t.Fatalf("a normal request behind a trickling body: %v", err)
			}
			_ = res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("a normal request behind a trickling body: status %d", res.StatusCode)
			}
			t.Logf("answered in %v behind a body at 20 B/s", time.Since(start).Round(time.Millisecond))
			// The trickle itself is refused, not passed on at its own pace.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			slow, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				_ = slow.Body.Close()
			}
			if err != nil || slow.StatusCode != http.StatusRequestTimeout {
				t.Errorf("the trickling request got %v %v, want 408", slowStatus(slow), err)
			}
		})
	}
}

func slowStatus(r *http.Response) any {
	if r == nil {
		return nil
	}
	return r.StatusCode
}

func TestHeaderBlockIsBounded(t *testing.T) {
	h := newHarness(t, serveHTTP(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	for _, tc := range []struct {
		size int
		want int
	}{{32 << 10, http.StatusOK}, {100 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
		h.setReady(true)
		req, _ := http.NewRequest(http.MethodGet, "http://app.shop/", nil)
		req.Header.Set("X-Big", strings.Repeat("a", tc.size))
		res, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("%d KiB of headers: status %d, want %d", tc.size>>10, res.StatusCode, tc.want)
		}
	}
}
