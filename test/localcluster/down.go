package localcluster

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stopOrder ends the node before the control plane, so kubelet does not restart what is being
// stopped, and the API server last but etcd.
var stopOrder = []string{"istiod", "kube-proxy", "kubelet", "coredns", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"}

// Down ends every process Up started (by the PIDs it recorded), containerd's shims for this
// cluster's socket, the mounts under Dir, and the network namespace with its bridge, veths and
// iptables rules. It is safe to call on a half-started or already stopped cluster.
func Down(o Options) error {
	var errs []error
	names := stopOrder
	if entries, err := os.ReadDir(o.pids()); err == nil {
		for _, e := range entries {
			if n := strings.TrimSuffix(e.Name(), ".pid"); !slices.Contains(names, n) && n != "containerd" {
				names = append(names, n)
			}
		}
	}
	for _, n := range names {
		errs = append(errs, o.stop(n))
	}
	// Containers outlive containerd in their shims; end the shims that serve our socket.
	for _, pid := range pidsWithArg(o.run()) {
		if n, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); strings.HasPrefix(string(n), "containerd-shim") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	errs = append(errs, o.stop("containerd"))
	errs = append(errs, unmountUnder(o.run()))
	if _, err := os.Stat(o.NetnsPath()); err == nil {
		errs = append(errs, run("ip", "netns", "del", o.Netns))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// The next Up starts from an empty cluster.
	if err := os.RemoveAll(o.run()); err != nil {
		return err
	}
	o.logf("cluster down")
	return nil
}

// stop sends SIGTERM to a recorded PID, and SIGKILL after two seconds: nothing in a
// throwaway cluster needs a longer grace.
func (o Options) stop(name string) error {
	path := filepath.Join(o.pids(), name+".pid")
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	pid, ok := readPID(path)
	// A recorded PID whose process is gone may have been reused: end it only if its command
	// line still names this cluster's state directory.
	if !ok || !mentions(pid, o.run()) {
		return os.Remove(path)
	}
	if syscall.Kill(pid, syscall.SIGTERM) == nil {
		for i := 0; i < 20 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return os.Remove(path)
}

// pidsWithArg lists processes whose command line mentions dir.
func pidsWithArg(dir string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cmdline), dir) {
			out = append(out, pid)
		}
	}
	return out
}

// unmountUnder lazily unmounts every mount point below dir, deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// readPID reads a PID file; PIDs 0 and 1 are never ours, so they count as unreadable.
func readPID(path string) (int, bool) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	return pid, err == nil && pid > 1
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func mentions(pid int, dir string) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.Contains(string(cmdline), dir)
}
