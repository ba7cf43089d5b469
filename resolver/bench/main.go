// Command bench measures the resolver from the outside: it runs the real handler chain behind a
// real loopback listener, fed by in-memory registry and readiness sources instead of an API
// server, and drives it with test/bench/loadgen running as separate processes. Every figure is
// printed next to a baseline measured in the same run. Run it with `make bench`.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
	"github.com/elasti-dev/elasti/resolver/internal/handler"
	"github.com/elasti-dev/elasti/resolver/internal/metrics"
	"github.com/elasti-dev/elasti/resolver/internal/proxy"
	"github.com/elasti-dev/elasti/resolver/internal/readiness"
	"github.com/elasti-dev/elasti/resolver/internal/registry"
	"github.com/elasti-dev/elasti/resolver/internal/throttler"
)

const ns = "bench"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	conc         int
	dur          time.Duration
	burst, wakes int
	maxConns     int
	cpuProfile   string
}

func run() error {
	var o options
	flag.IntVar(&o.conc, "c", 64, "concurrent clients for the warm pass-through")
	flag.DurationVar(&o.dur, "d", 5*time.Second, "duration of each warm pass-through run")
	flag.IntVar(&o.burst, "burst", 10000, "requests held at zero in the burst")
	flag.IntVar(&o.wakes, "wakes", 300, "wake-ups measured for the wake path")
	flag.IntVar(&o.maxConns, "max-conns-per-upstream", 1024, "the resolver's --max-conns-per-upstream")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write the resolver's CPU profile during the warm pass-through here")
	flag.Parse()
	raiseNoFile()

	tmp, err := os.MkdirTemp("", "elasti-bench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	loadgen := filepath.Join(tmp, "loadgen")
	if out, err := exec.Command("go", "build", "-o", loadgen, "./test/bench/loadgen").CombinedOutput(); err != nil {
		return fmt.Errorf("building loadgen (run from the repository root): %w\n%s", err, out)
	}
	backend, stop, err := startBackend(loadgen)
	if err != nil {
		return err
	}
	defer stop()

	r, err := newResolver(o.maxConns)
	if err != nil {
		return err
	}
	fmt.Printf("elasti resolver benchmark: GOMAXPROCS=%d, %s, loopback only\n\n", runtime.GOMAXPROCS(0), runtime.Version())

	if err := warm(r, loadgen, backend, o); err != nil {
		return err
	}
	if err := burst(r, loadgen, backend, o); err != nil {
		return err
	}
	return wake(r, loadgen, o)
}

// resolver is the real chain with in-memory sources.
type resolver struct {
	addr  string
	reg   *registry.Registry
	ready *readiness.Cache
	thr   *throttler.Throttler
}

type noWaker struct{}

func (noWaker) Held(types.NamespacedName, func() bool) {}
func (noWaker) Active(types.NamespacedName)            {}

func newResolver(maxConns int) (*resolver, error) {
	reg := registry.New("cluster.local", nil)
	ready := readiness.New()
	thr := throttler.New(ready, 50000)
	ready.SetListener(thr)
	chain := handler.Build(handler.Config{
		Proxy: proxy.New(proxy.Options{MaxConnsPerHost: maxConns}), Targets: reg, Throttler: thr, Waker: noWaker{},
		Endpoints: ready, Upstream: handler.UpstreamPods, Domain: "cluster.local",
		MaxPending: 20000, HoldTimeout: 2 * time.Minute, Metrics: metrics.New(),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() { _ = handler.NewServer("", chain, time.Hour).Serve(ln) }()
	return &resolver{addr: ln.Addr().String(), reg: reg, ready: ready, thr: thr}, nil
}

func (r *resolver) addTarget(service string) types.NamespacedName {
	r.reg.UpsertElastiService(&v1alpha1.ElastiService{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: service},
		Spec:       v1alpha1.ElastiServiceSpec{Service: service},
	})
	return types.NamespacedName{Namespace: ns, Name: names.PrivateService(service)}
}

// setReady writes the private Service's EndpointSlice as the cluster would.
func (r *resolver) setReady(key types.NamespacedName, addr string, ready bool) {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	r.ready.Update(&discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: key.Name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: key.Name}},
		Ports:      []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(p))}},
		Endpoints:  []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}},
	})
}

func (r *resolver) waitPending(key types.NamespacedName, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for r.thr.Pending(key) < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d requests held after %v", r.thr.Pending(key), n, limit)
		}
		time.Sleep(50 * time.Microsecond)
	}
	return nil
}

// rpsResult mirrors loadgen's RPS.
type rpsResult struct {
	Requests, Errors int
	RPS              float64
	P50us, P99us     float64
}

func warm(r *resolver, loadgen, backend string, o options) error {
	key := r.addTarget("warm")
	r.setReady(key, backend, true)
	args := func(url, host string) []string {
		return []string{"-mode=rps", "-url=" + url, "-host=" + host, "-c=" + strconv.Itoa(o.conc), "-d=" + o.dur.String()}
	}
	var direct, via rpsResult
	// A short run each way first, so both sides have warm connections and code.
	for _, run := range []struct {
		out  *rpsResult
		args []string
	}{
		{new(rpsResult), []string{"-mode=rps", "-url=http://" + backend + "/", "-host=warm", "-c=8", "-d=1s"}},
		{new(rpsResult), []string{"-mode=rps", "-url=http://" + r.addr + "/", "-host=warm." + ns, "-c=8", "-d=1s"}},
		{&direct, args("http://"+backend+"/", "warm")},
		{&via, args("http://"+r.addr+"/", "warm."+ns)},
	} {
		if run.out == &via && o.cpuProfile != "" {
			f, err := os.Create(o.cpuProfile)
			if err != nil {
				return err
			}
			_ = pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
		}
		if err := runJSON(loadgen, run.args, run.out); err != nil {
			return err
		}
	}
	fmt.Printf("1. Warm pass-through: %d keep-alive clients, small GETs, %v per run\n", o.conc, o.dur)
	fmt.Printf("   direct:   %8.0f req/s  p50 %6.0f µs  p99 %6.0f µs  errors %d\n", direct.RPS, direct.P50us, direct.P99us, direct.Errors)
	fmt.Printf("   resolver: %8.0f req/s  p50 %6.0f µs  p99 %6.0f µs  errors %d\n", via.RPS, via.P50us, via.P99us, via.Errors)
	fmt.Printf("   throughput ratio resolver/direct: %.2f (goal >= 0.6); added p99: %.2f ms (goal <= 1 ms)\n\n",
		via.RPS/direct.RPS, (via.P99us-direct.P99us)/1000)
	return nil
}

type burstResult struct {
	OK, NotOK, Errors int
	FirstError        string
	LastDoneUnixNano  int64
}

type stats struct{ Total, Distinct, Duplicates int }

func burst(r *resolver, loadgen, backend string, o options) error {
	key := r.addTarget("burst")
	reset, err := http.Get("http://" + backend + "/reset")
	if err != nil {
		return err
	}
	_ = reset.Body.Close()
	before := memory()
	cmd := exec.Command(loadgen, "-mode=burst", "-url=http://"+r.addr+"/", "-host=burst."+ns, "-n="+strconv.Itoa(o.burst))
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := r.waitPending(key, o.burst, 2*time.Minute); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	held := memory()
	readyAt := time.Now()
	r.setReady(key, backend, true)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("loadgen burst: %w", err)
	}
	var res burstResult
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		return fmt.Errorf("loadgen burst output %q: %w", out.String(), err)
	}
	var st stats
	resp, err := http.Get("http://" + backend + "/stats")
	if err != nil {
		return err
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	_ = resp.Body.Close()
	fmt.Printf("2. Burst at zero: %d concurrent requests held, then the target made ready\n", o.burst)
	fmt.Printf("   answered 200: %d, other status: %d, errors: %d %s\n", res.OK, res.NotOK, res.Errors, res.FirstError)
	fmt.Printf("   backend saw: %d requests, %d distinct ids, %d ids more than once (exactly once: %v)\n",
		st.Total, st.Distinct, st.Duplicates, st.Total == o.burst && st.Distinct == o.burst && st.Duplicates == 0)
	fmt.Printf("   resolver memory while holding (heap+stacks in use): %.1f MiB over baseline = %.1f KiB per held request (goal <= 32 KiB)\n",
		float64(held-before)/(1<<20), float64(held-before)/float64(o.burst)/1024)
	fmt.Printf("   time from ready to last response: %v\n\n", time.Unix(0, res.LastDoneUnixNano).Sub(readyAt).Round(time.Millisecond))
	return nil
}

// memory is the heap and goroutine stacks in use after a collection: what held requests cost.
func memory() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

func wake(r *resolver, loadgen string, o options) error {
	key := r.addTarget("wake")
	// The backend for this pass lives here, so one clock times the readiness event and the
	// request's arrival; it drops readiness again before answering, so each request is held.
	arrivals := make(chan time.Duration, 1)
	var readyAt atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		arrivals <- time.Duration(time.Now().UnixNano() - readyAt.Load())
		r.setReady(key, addr, false)
		_, _ = io.WriteString(w, "ok")
	}), ReadHeaderTimeout: time.Minute}
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()

	cmd := exec.Command(loadgen, "-mode=serial", "-url=http://"+r.addr+"/", "-host=wake."+ns, "-n="+strconv.Itoa(o.wakes))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lat := make([]time.Duration, 0, o.wakes)
	for range o.wakes {
		if err := r.waitPending(key, 1, 30*time.Second); err != nil {
			return err
		}
		readyAt.Store(time.Now().UnixNano())
		r.setReady(key, addr, true)
		select {
		case d := <-arrivals:
			lat = append(lat, d)
		case <-time.After(30 * time.Second):
			return fmt.Errorf("no request reached the backend after a wake-up")
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	fmt.Printf("3. Wake path: endpoint-ready event to first byte at the backend, %d wake-ups\n", len(lat))
	fmt.Printf("   p50 %v  p99 %v  max %v (goal p99 <= 5 ms)\n", pct(.5).Round(time.Microsecond), pct(.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	return nil
}

func startBackend(loadgen string) (string, func(), error) {
	cmd := exec.Command(loadgen, "-mode=backend")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = stdin.Close(); _ = cmd.Wait() }
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		stop()
		return "", nil, fmt.Errorf("backend did not start: %w", err)
	}
	return strings.TrimSpace(line), stop, nil
}

func runJSON(bin string, args []string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		return fmt.Errorf("%s %v: %w", bin, args, err)
	}
	return json.Unmarshal(b, out)
}

func raiseNoFile() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
