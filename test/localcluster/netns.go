package localcluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// inNetns runs f on an OS thread that has joined the cluster's network namespace. Sockets keep
// the namespace they were created in, and /proc/sys/net shows the namespace of the thread that
// opens it, so dials and sysctls done in f land inside the cluster while the rest of the
// process stays where it was.
func (o Options) inNetns(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(o.NetnsPath())
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("joining netns %s: %w", o.Netns, err)
			return
		}
		errc <- f()
		// A thread that cannot go back stays locked, and the runtime ends it with the goroutine.
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return <-errc
}

// DialContext connects from inside the cluster's network namespace. Names are resolved by the
// cluster's DNS, so Service names such as target.default.svc.cluster.local work; a single
// address is dialled on the namespaced thread, so the socket is created there.
func (o Options) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if net.ParseIP(host) == nil {
		ips, err := o.resolver().LookupIPAddr(ctx, host)
		if err != nil {
			return nil, err
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("no address for %s", host)
		}
		addr = net.JoinHostPort(ips[0].IP.String(), port)
	}
	var conn net.Conn
	err = o.inNetns(func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// resolver asks CoreDNS on the node address, through the namespace.
func (o Options) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var conn net.Conn
		err := o.inNetns(func() error {
			var d net.Dialer
			var err error
			conn, err = d.DialContext(ctx, network, net.JoinHostPort(NodeIP, "53"))
			return err
		})
		return conn, err
	}}
}

// command builds a command that runs inside the namespace. nsenter without --fork execs the
// program in place, so the PID of the returned process is the program's own.
func (o Options) command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + o.NetnsPath(), "--", bin}, args...)...)
}

// runIn runs a short command inside the namespace and returns its combined output.
func (o Options) runIn(ctx context.Context, bin string, args ...string) (string, error) {
	out, err := o.command(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// sysctl writes /proc/sys/<key> inside the namespace; the net.* keys are per namespace, so
// writing them from the host would change the host's network.
func (o Options) sysctl(key, value string) error {
	return o.inNetns(func() error { return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644) })
}
