// Command loadgen is elasti's load generator and benchmark backend, run as its own process so
// the resolver is measured from the outside. It only talks to loopback addresses.
//
//	loadgen -mode=backend                    serve on 127.0.0.1, print the address, count requests by id
//	loadgen -mode=rps -url=U -host=H -c=64 -d=5s   closed-loop keep-alive GETs; JSON throughput and latency
//	loadgen -mode=burst -url=U -host=H -n=10000    n concurrent GETs with ids (-id-prefix P); JSON outcome and last answer time
//	loadgen -mode=serial -url=U -host=H -n=300     n GETs one after the other
//
// -cpuprofile=FILE profiles a run, or the backend until it is asked GET /profile/stop.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elasti-dev/elasti/internal/rlimit"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run() error {
	mode := flag.String("mode", "rps", "backend, rps, burst or serial")
	target := flag.String("url", "", "URL to send to (loopback only)")
	host := flag.String("host", "", "Host header")
	conc := flag.Int("c", 64, "concurrent clients (rps)")
	dur := flag.Duration("d", 5*time.Second, "duration (rps)")
	n := flag.Int("n", 10000, "requests (burst, serial)")
	prefix := flag.String("id-prefix", "", "prefix of the burst's request ids, so two bursts at one backend stay apart")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here: of the run, or of the backend until GET /profile/stop")
	flag.Parse()
	rlimit.RaiseNoFile()
	stopProfile, err := startProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	if *mode == "backend" {
		return backend(stopProfile)
	}
	u, err := url.Parse(*target)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing to send to %q: loopback only", u.Host)
	}
	var out any
	switch *mode {
	case "rps":
		out, err = rps(*target, *host, *conc, *dur)
	case "burst":
		out, err = burst(*target, *host, *prefix, *n)
	case "serial":
		out, err = serial(*target, *host, *n)
	default:
		return fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

func client(conns int, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
	}}
}

func get(c *http.Client, target, host string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return 0, err
	}
	req.Host = host
	res, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res.StatusCode, nil
}

// RPS is the result of the rps mode.
type RPS struct {
	Requests, Errors int
	RPS              float64
	P50us, P99us     float64
}

func rps(target, host string, conc int, d time.Duration) (RPS, error) {
	c := client(conc, 10*time.Second)
	deadline := time.Now().Add(d)
	lat := make([][]time.Duration, conc)
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conc {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				t := time.Now()
				code, err := get(c, target, host)
				if err != nil || code != http.StatusOK {
					errs.Add(1)
					continue
				}
				lat[i] = append(lat[i], time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return RPS{}, errors.New("no successful request")
	}
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) / 1e3 }
	return RPS{Requests: len(all), Errors: int(errs.Load()), RPS: float64(len(all)) / elapsed.Seconds(), P50us: pct(.50), P99us: pct(.99)}, nil
}

// Burst is the result of the burst mode.
type Burst struct {
	OK, NotOK, Errors int
	FirstError        string
	LastDoneUnixNano  int64
}

func burst(target, host, prefix string, n int) (Burst, error) {
	c := client(n, 3*time.Minute)
	var ok, bad, errs atomic.Int64
	var last atomic.Int64
	var first sync.Once
	var firstErr string
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			code, err := get(c, target+"?id="+prefix+strconv.Itoa(i), host)
			now := time.Now().UnixNano()
			for {
				if l := last.Load(); now <= l || last.CompareAndSwap(l, now) {
					break
				}
			}
			switch {
			case err != nil:
				errs.Add(1)
				first.Do(func() { firstErr = err.Error() })
			case code != http.StatusOK:
				bad.Add(1)
				first.Do(func() { firstErr = "status " + strconv.Itoa(code) })
			default:
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return Burst{OK: int(ok.Load()), NotOK: int(bad.Load()), Errors: int(errs.Load()), FirstError: firstErr, LastDoneUnixNano: last.Load()}, nil
}

// Serial is the result of the serial mode.
type Serial struct{ OK, NotOK int }

func serial(target, host string, n int) (Serial, error) {
	c := client(1, time.Minute)
	var s Serial
	for range n {
		code, err := get(c, target, host)
		if err != nil {
			return s, err
		}
		if code == http.StatusOK {
			s.OK++
		} else {
			s.NotOK++
		}
	}
	return s, nil
}

// Stats is what the backend answers on /stats: how many requests it saw, and how many ids it
// saw more than once.
type Stats struct{ Total, Distinct, Duplicates int }

// startProfile starts a CPU profile into path, if set; the returned stop may be called more
// than once.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { pprof.StopCPUProfile(); _ = f.Close() }) }, nil
}

func backend(stopProfile func()) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var total atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		s := Stats{Total: int(total.Load()), Distinct: len(seen)}
		for _, c := range seen {
			if c > 1 {
				s.Duplicates++
			}
		}
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(s)
	})
	mux.HandleFunc("/reset", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		clear(seen)
		total.Store(0)
		mu.Unlock()
	})
	mux.HandleFunc("/profile/stop", func(http.ResponseWriter, *http.Request) { stopProfile() })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		total.Add(1)
		if id := r.URL.Query().Get("id"); id != "" {
			mu.Lock()
			seen[id]++
			mu.Unlock()
		}
		_, _ = io.WriteString(w, "ok")
	})
	fmt.Println(ln.Addr().String())
	// The parent closes stdin to stop the backend.
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stopProfile(); os.Exit(0) }()
	return (&http.Server{Handler: mux, ReadHeaderTimeout: time.Minute}).Serve(ln)
}
