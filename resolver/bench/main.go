// Command bench measures the resolver from the outside: it runs the real handler chain behind a
// real loopback listener, fed by in-memory registry and readiness sources instead of an API
// server, and drives it with test/bench/loadgen running as separate processes. Every figure is
// printed next to a baseline measured in the same run. Run it with `make bench`.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/rlimit"
	"github.com/elasti-dev/elasti/resolver/internal/app"
	"github.com/elasti-dev/elasti/resolver/internal/handler"
	"github.com/elasti-dev/elasti/resolver/internal/proxy"
	"github.com/elasti-dev/elasti/resolver/internal/resolvertest"
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
	rounds       int
	profile      string
	bare, pin    bool
}

func run() error {
	var o options
	flag.IntVar(&o.conc, "c", 64, "concurrent clients for the warm pass-through")
	flag.DurationVar(&o.dur, "d", 5*time.Second, "duration of each warm pass-through run")
	flag.IntVar(&o.burst, "burst", 10000, "requests held at zero in the burst")
	flag.IntVar(&o.wakes, "wakes", 300, "wake-ups measured for the wake path")
	flag.IntVar(&o.maxConns, "max-conns-per-upstream", 100, "the resolver's --max-conns-per-upstream (its default)")
	flag.IntVar(&o.rounds, "rounds", 3, "warm pass-through rounds, each a direct and a resolver pass; the median is the result")
	flag.BoolVar(&o.bare, "bare", true, "also measure a plain httputil.ReverseProxy each round, for comparison")
	flag.BoolVar(&o.pin, "pin", false, "pin loadgen and backend to CPU 0 and this process (the resolver) to CPU 1")
	flag.StringVar(&o.profile, "profile", "", "directory for CPU profiles of the resolver, loadgen and backend and the resolver's alloc profile, all from the warm passes")
	flag.Parse()
	rlimit.RaiseNoFile()

	tmp, err := os.MkdirTemp("", "elasti-bench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	loadgen := filepath.Join(tmp, "loadgen")
	if out, err := exec.Command("go", "build", "-o", loadgen, "./test/bench/loadgen").CombinedOutput(); err != nil {
		return fmt.Errorf("building loadgen (run from the repository root): %w\n%s", err, out)
	}
	backendProfile := ""
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
		backendProfile = filepath.Join(o.profile, "backend-cpu.prof")
	}
	if o.pin {
		// -a: every thread of this process; threads started later inherit the mask.
		if out, err := exec.Command("taskset", "-a", "-p", "-c", "1", strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
			return fmt.Errorf("taskset: %w\n%s", err, out)
		}
	}
	backend, err := startBackend(loadgen, backendProfile, o.pin)
	if err != nil {
		return err
	}
	defer backend.stop()

	// The burst holds more than one Service's default share, so this resolver has room for it.
	r, err := newResolver(o.maxConns, limits{total: 50000, perTarget: 20000})
	if err != nil {
		return err
	}
	fmt.Printf("elasti resolver benchmark: GOMAXPROCS=%d, %s, loopback only\n\n", runtime.GOMAXPROCS(0), runtime.Version())

	if err := warm(r, loadgen, backend, o); err != nil {
		return err
	}
	// The backend's profile covers the warm passes only.
	if o.profile != "" {
		if err := backend.get("/profile/stop", nil); err != nil {
			return err
		}
	}
	if err := burst(r, loadgen, backend.addr, o); err != nil {
		return err
	}
	if err := wake(r, loadgen, o); err != nil {
		return err
	}
	return flood(loadgen, backend.addr, o)
}

// limits are the resolver's hold limits; productLimits are its flags' defaults.
type limits struct{ total, share, perTarget, limit int }

var productLimits = limits{total: app.DefaultMaxPendingTotal, share: app.DefaultMaxPendingPerNamespace,
	perTarget: app.DefaultMaxPending, limit: app.DefaultMaxPendingLimit}

// resolver is the real resolver (app.New, through resolvertest) with in-memory sources.
type resolver struct {
	*resolvertest.Resolver
	addr string
}

func newResolver(maxConns int, l limits) (*resolver, error) {
	r := resolvertest.New(app.Options{
		MaxPending: l.perTarget, MaxPendingLimit: l.limit, MaxPendingTotal: l.total, MaxPendingPerNamespace: l.share,
		HoldTimeout: 2 * time.Minute, Proxy: proxy.Options{MaxConnsPerHost: maxConns},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go serveLabelled("resolver", handler.NewServer("", r.Handler, time.Hour), ln)
	return &resolver{Resolver: r, addr: ln.Addr().String()}, nil
}

func (r *resolver) addTarget(service string) types.NamespacedName {
	return r.addTargetIn(ns, service, 0)
}

// addTargetIn adds an ElastiService for service in namespace, asking for maxPending held
// requests (0: the resolver's default).
func (r *resolver) addTargetIn(namespace, service string, maxPending int32) types.NamespacedName {
	es := resolvertest.ElastiService(namespace, service)
	if maxPending > 0 {
		es.Spec.Queue = &v1alpha1.QueueSettings{MaxPending: &maxPending}
	}
	return r.Add(es)
}

// rpsResult mirrors loadgen's RPS.
type rpsResult struct {
	Requests, Errors int
	RPS              float64
	P50us, P99us     float64
}

// cpuUse is the CPU time each process spent during one load pass, and the busy CPU time of
// the whole machine, so what other work on the machine took can be told apart.
type cpuUse struct {
	loadgen, backend, resolver, machine time.Duration
}

// pass is one loadgen run and what it cost.
type pass struct {
	rpsResult
	cpu     cpuUse
	elapsed time.Duration
}

// perReq is a CPU time per request in microseconds.
func (p pass) perReq(d time.Duration) float64 {
	return float64(d.Microseconds()) / float64(max(p.Requests, 1))
}

// others is how many cores processes outside the benchmark kept busy during the pass.
func (p pass) others() float64 {
	own := p.cpu.loadgen + p.cpu.backend + p.cpu.resolver
	return max(float64(p.cpu.machine-own), 0) / float64(p.elapsed)
}

// passKind is one way of sending the warm load.
type passKind struct {
	name string
	args func(c int, d time.Duration) []string
}

func warm(r *resolver, loadgen string, backend *backendProc, o options) error {
	key := r.addTarget("warm")
	r.SetReady(key, backend.addr, true)
	rps := func(addr, host string) func(int, time.Duration) []string {
		return func(c int, d time.Duration) []string {
			return []string{"-mode=rps", "-url=http://" + addr + "/", "-host=" + host, "-c=" + strconv.Itoa(c), "-d=" + d.String()}
		}
	}
	kinds := []passKind{{"direct", rps(backend.addr, "warm")}, {"resolver", rps(r.addr, "warm."+ns)}}
	if o.bare {
		bare, err := startBare(backend.addr, o.maxConns)
		if err != nil {
			return err
		}
		kinds = append(kinds, passKind{"bare", rps(bare, "warm")})
	}
	// A short run each way first, so every side has warm connections and code.
	for _, k := range kinds {
		if _, err := runPass(loadgen, k.args(o.conc, time.Second), backend, "", o.pin); err != nil {
			return err
		}
	}
	prof := func(name string) string {
		if o.profile == "" {
			return ""
		}
		return filepath.Join(o.profile, name)
	}
	if o.profile != "" {
		f, err := os.Create(prof("resolver-cpu.prof"))
		if err != nil {
			return err
		}
		_ = pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
		defer func() {
			if err := writeAllocs(prof("resolver-allocs.prof")); err != nil {
				fmt.Fprintln(os.Stderr, "bench: alloc profile:", err)
			}
		}()
	}
	fmt.Printf("1. Warm pass-through: %d keep-alive clients, small GETs, %v per pass, %d rounds of %d passes\n",
		o.conc, o.dur, o.rounds, len(kinds))
	if o.bare {
		fmt.Println("   (bare: a plain httputil.ReverseProxy with the same server, transport and buffer pool, no elasti")
		fmt.Println("   handlers: the floor for any proxy built on net/http, measured for comparison only)")
	}
	if o.pin {
		fmt.Println("   pinned: loadgen and backend on CPU 0, the resolver (and bare proxy) on CPU 1")
	}
	fmt.Printf("   %-8s %9s %8s %8s %7s  %s\n", "pass", "req/s", "p50 µs", "p99 µs", "errors", "CPU µs/request: loadgen backend proxy; other load (cores)")
	var ratios, added, bareRatios []float64
	for i := range o.rounds {
		// Rotate which pass goes first, so a drift in the machine's load favours none.
		got := map[string]pass{}
		for j := range kinds {
			k := kinds[(i+j)%len(kinds)]
			p, err := runPass(loadgen, k.args(o.conc, o.dur), backend, prof(fmt.Sprintf("loadgen-%s-%d-cpu.prof", k.name, i+1)), o.pin)
			if err != nil {
				return err
			}
			got[k.name] = p
			fmt.Printf("   %-8s %9.0f %8.0f %8.0f %7d  %7.1f %7.1f %8.1f; %.2f\n", k.name, p.RPS, p.P50us, p.P99us, p.Errors,
				p.perReq(p.cpu.loadgen), p.perReq(p.cpu.backend), p.perReq(p.cpu.resolver), p.others())
		}
		d, v := got["direct"], got["resolver"]
		ratios = append(ratios, v.RPS/d.RPS)
		added = append(added, (v.P99us-d.P99us)/1000)
		line := fmt.Sprintf("   round %d: throughput ratio %.2f, added p99 %.2f ms", i+1, ratios[i], added[i])
		if b, ok := got["bare"]; ok {
			bareRatios = append(bareRatios, b.RPS/d.RPS)
			line += fmt.Sprintf(" (bare: ratio %.2f, added p99 %.2f ms)", b.RPS/d.RPS, (b.P99us-d.P99us)/1000)
		}
		fmt.Println(line)
	}
	fmt.Printf("   median of %d rounds: throughput ratio resolver/direct %.2f (goal >= 0.6); added p99 %.2f ms (goal <= 1 ms); ratios %.2f..%.2f\n",
		o.rounds, median(ratios), median(added), slices.Min(ratios), slices.Max(ratios))
	if len(bareRatios) > 0 {
		fmt.Printf("   bare ReverseProxy for comparison: median ratio %.2f\n", median(bareRatios))
	}
	fmt.Println()
	return nil
}

// startBare serves a plain ReverseProxy to the backend: what net/http alone costs, with the
// resolver's server settings, HTTP/1.1 transport settings and a pool of copy buffers.
func startBare(backend string, maxConns int) (string, error) {
	target := &url.URL{Scheme: "http", Host: backend}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:  proxy.NewTransport(0, 0, maxConns).H1,
		BufferPool: &barePool{},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go serveLabelled("bare", handler.NewServer("", rp, time.Hour), ln)
	return ln.Addr().String(), nil
}

// serveLabelled serves with a profiler label that every connection's goroutines, and the
// transport goroutines they start, inherit: `go tool pprof -tagfocus proxy=bare` separates the
// two proxies in one profile.
func serveLabelled(name string, srv *http.Server, ln net.Listener) {
	pprof.Do(context.Background(), pprof.Labels("proxy", name), func(context.Context) { _ = srv.Serve(ln) })
}

type barePool struct{ sync.Pool }

func (p *barePool) Get() []byte {
	if b, ok := p.Pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32*1024)
}

func (p *barePool) Put(b []byte) { p.Pool.Put(&b) }

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	return pprof.Lookup("allocs").WriteTo(f, 0)
}

// runPass runs loadgen once and measures the CPU time it, the backend, this process (the
// resolver; the harness itself only waits meanwhile) and the whole machine spent.
func runPass(loadgen string, args []string, backend *backendProc, cpuProfile string, pin bool) (pass, error) {
	if cpuProfile != "" {
		args = append(args, "-cpuprofile="+cpuProfile)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, loadgen, args...)
	if pin {
		// taskset execs loadgen in its own process, so the CPU times are still loadgen's.
		cmd = exec.CommandContext(ctx, "taskset", append([]string{"-c", "0", loadgen}, args...)...)
	}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	b0, s0, m0 := backend.cpu(), selfCPU(), machineCPU()
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return pass{}, fmt.Errorf("%s %v: %w", loadgen, args, err)
	}
	p := pass{elapsed: time.Since(start)}
	p.cpu = cpuUse{
		loadgen:  cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(),
		backend:  backend.cpu() - b0,
		resolver: selfCPU() - s0,
		machine:  machineCPU() - m0,
	}
	return p, json.Unmarshal([]byte(out.String()), &p.rpsResult)
}

// clockTick is USER_HZ, the unit of /proc's CPU times: 100 on every Linux architecture Go
// supports.
const clockTick = 10 * time.Millisecond

// procCPU is a process's user and system time from /proc/<pid>/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * clockTick
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the busy time of all CPUs from /proc/stat: everything but idle and iowait.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 8 { // idle, iowait; guest time is already in user
			busy += n
		}
	}
	return time.Duration(busy) * clockTick
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
	if err := r.WaitPending(key, o.burst, 2*time.Minute); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	held := memory()
	readyAt := time.Now()
	r.SetReady(key, backend, true)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("loadgen burst: %w", err)
	}
	var res burstResult
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		return fmt.Errorf("loadgen burst output %q: %w", out.String(), err)
	}
	st, err := backendStats(backend)
	if err != nil {
		return err
	}
	fmt.Printf("2. Burst at zero: %d concurrent requests held, then the target made ready\n", o.burst)
	fmt.Printf("   answered 200: %d, other status: %d, errors: %d %s\n", res.OK, res.NotOK, res.Errors, res.FirstError)
	fmt.Printf("   backend saw: %d requests, %d distinct ids, %d ids more than once (exactly once: %v)\n",
		st.Total, st.Distinct, st.Duplicates, st.Total == o.burst && st.Distinct == o.burst && st.Duplicates == 0)
	fmt.Printf("   resolver memory while holding (heap+stacks in use): %.1f MiB over baseline = %.1f KiB per held request (goal <= 32 KiB)\n",
		float64(held-before)/(1<<20), float64(held-before)/float64(o.burst)/1024)
	fmt.Printf("   time from ready to last response: %v\n\n", time.Unix(0, res.LastDoneUnixNano).Sub(readyAt).Round(time.Millisecond))
	return nil
}

// flood: with the product's default limits, one tenant floods its Service at zero with more
// requests than a namespace may hold, asking for the most a spec.queue.maxPending can say, while
// another tenant's requests for its own Service at zero are held. The quiet tenant must be held
// and answered in full; the flood gets its namespace's share and 503 for the rest.
func flood(loadgen, backend string, o options) error {
	r, err := newResolver(o.maxConns, productLimits)
	if err != nil {
		return err
	}
	const floodN, quietN = 8000, 500
	loud := r.addTargetIn("flood", "loud", 100000)
	quiet := r.addTargetIn("quiet", "calm", 0)
	reset, err := http.Get("http://" + backend + "/reset")
	if err != nil {
		return err
	}
	_ = reset.Body.Close()
	before := memory()
	type run struct {
		cmd *exec.Cmd
		out *strings.Builder
	}
	start := func(host, prefix string, n int) (run, error) {
		cmd := exec.Command(loadgen, "-mode=burst", "-url=http://"+r.addr+"/", "-host="+host, "-id-prefix="+prefix, "-n="+strconv.Itoa(n))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, os.Stderr
		return run{cmd, out}, cmd.Start()
	}
	f, err := start("loud.flood", "f", floodN)
	if err != nil {
		return err
	}
	if err := r.WaitPending(loud, productLimits.share, 2*time.Minute); err != nil {
		return err
	}
	q, err := start("calm.quiet", "q", quietN)
	if err != nil {
		return err
	}
	if err := r.WaitPending(quiet, quietN, 2*time.Minute); err != nil {
		return err
	}
	held := memory()
	r.SetReady(loud, backend, true)
	r.SetReady(quiet, backend, true)
	var res [2]burstResult
	for i, x := range []run{f, q} {
		if err := x.cmd.Wait(); err != nil {
			return fmt.Errorf("loadgen burst: %w", err)
		}
		if err := json.Unmarshal([]byte(x.out.String()), &res[i]); err != nil {
			return fmt.Errorf("loadgen burst output %q: %w", x.out.String(), err)
		}
	}
	st, err := backendStats(backend)
	if err != nil {
		return err
	}
	fmt.Printf("4. Tenant flood, default limits (total %d, per namespace %d, spec.queue.maxPending cut to %d)\n",
		productLimits.total, productLimits.share, productLimits.limit)
	fmt.Printf("   flooding tenant, %d requests asking maxPending 100000: %d answered 200, %d refused (503), %d errors\n",
		floodN, res[0].OK, res[0].NotOK, res[0].Errors)
	fmt.Printf("   quiet tenant, %d requests held meanwhile: %d answered 200 (%.1f%%), %d other, %d errors\n",
		quietN, res[1].OK, 100*float64(res[1].OK)/quietN, res[1].NotOK, res[1].Errors)
	fmt.Printf("   backend saw: %d requests, %d distinct ids, %d more than once\n", st.Total, st.Distinct, st.Duplicates)
	fmt.Printf("   resolver memory while %d were held: %.1f MiB over baseline (the chart's default limit is 1024 MiB)\n\n",
		productLimits.share+quietN, float64(held-before)/(1<<20))
	return nil
}

// backendStats reads what the backend counted since its last reset.
func backendStats(backend string) (stats, error) {
	var st stats
	resp, err := http.Get("http://" + backend + "/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
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
		r.SetReady(key, addr, false)
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
		if err := r.WaitPending(key, 1, 30*time.Second); err != nil {
			return err
		}
		readyAt.Store(time.Now().UnixNano())
		r.SetReady(key, addr, true)
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

// backendProc is the backend loadgen process.
type backendProc struct {
	addr string
	cmd  *exec.Cmd
	stop func()
}

func (b *backendProc) cpu() time.Duration { return procCPU(b.cmd.Process.Pid) }

func (b *backendProc) get(path string, out any) error {
	resp, err := http.Get("http://" + b.addr + path)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func startBackend(loadgen, cpuProfile string, pin bool) (*backendProc, error) {
	cmd := exec.Command(loadgen, "-mode=backend", "-cpuprofile="+cpuProfile)
	if pin {
		cmd = exec.Command("taskset", "-c", "0", loadgen, "-mode=backend", "-cpuprofile="+cpuProfile)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() { _ = stdin.Close(); _ = cmd.Wait() }
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		stop()
		return nil, fmt.Errorf("backend did not start: %w", err)
	}
	return &backendProc{addr: strings.TrimSpace(line), cmd: cmd, stop: stop}, nil
}
