package localcluster

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// daemons are the processes Up records besides containerd, which must outlive them so that its
// shims can be found and ended after kubelet has stopped starting containers.
var daemons = []string{"istiod", "kube-proxy", "kubelet", "coredns", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"}

// Down ends every process Up started (by the PIDs it recorded), containerd's shims for this
// cluster's socket, the mounts under Dir, and the network namespace with its bridge, veths and
// iptables rules. It is safe to call on a half-started or already stopped cluster.
func Down(o Options) error {
	var errs []error
	names := slices.Clone(daemons)
	if entries, err := os.ReadDir(o.pids()); err == nil {
		for _, e := range entries {
			if n, ok := strings.CutSuffix(e.Name(), ".pid"); ok && !slices.Contains(names, n) && n != "containerd" {
				names = append(names, n)
			}
		}
	}
	// A throwaway cluster needs no orderly shutdown: stop every daemon at once, so teardown
	// costs one grace period rather than one per daemon.
	stopErrs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() { stopErrs[i] = o.stop(n) })
	}
	wg.Wait()
	errs = append(errs, stopErrs...)
	// Containers outlive containerd in their shims, and outlive a killed shim as orphans: end
	// the shims that serve our socket together with every process below them.
	var shims []int
	for _, pid := range pidsWithArg(o.run()) {
		if n, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); strings.HasPrefix(string(n), "containerd-shim") {
			shims = append(shims, pid)
		}
	}
	victims := append(descendants(shims), shims...)
	podNetns := netnsOf(victims)
	for _, pid := range victims {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for i := 0; i < 50 && slices.ContainsFunc(victims, alive); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	errs = append(errs, o.stop("containerd"))
	errs = append(errs, unmountUnder(o.run()))
	errs = append(errs, o.removeCgroupRoot())
	// containerd keeps each pod's network namespace as a bind mount under /var/run/netns; with
	// the sandboxes never deleted, remove the ones our containers lived in.
	errs = append(errs, removeNetnsMounts(podNetns))
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
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // nothing recorded: never started, or stopped already
	}
	if err != nil {
		return err
	}
	pid, ok := readPID(path)
	// A recorded PID whose process is gone may have been reused: end it only if its command
	// line still names this cluster's state directory.
	if !ok || !mentions(pid, o.run()) {
		return os.Remove(path)
	}
	if syscall.Kill(pid, syscall.SIGTERM) == nil {
		for i := 0; i < 20 && running(pid); i++ {
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

// descendants lists every process below the given ones, from /proc's parent links.
func descendants(roots []int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name in parentheses may hold spaces; the parent PID is the second field
		// after its closing parenthesis.
		rest := string(stat)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		if f := strings.Fields(rest); len(f) > 1 {
			if ppid, err := strconv.Atoi(f[1]); err == nil {
				children[ppid] = append(children[ppid], pid)
			}
		}
	}
	var out []int
	queue := slices.Clone(roots)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, children[p]...)
		queue = append(queue, children[p]...)
	}
	return out
}

// netnsOf returns the identities (device and inode) of the network namespaces of pids.
func netnsOf(pids []int) map[[2]uint64]bool {
	out := map[[2]uint64]bool{}
	for _, pid := range pids {
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+strconv.Itoa(pid)+"/ns/net", &st) == nil {
			out[[2]uint64{st.Dev, st.Ino}] = true
		}
	}
	return out
}

// removeNetnsMounts unmounts and removes the entries of /var/run/netns that are one of ids.
func removeNetnsMounts(ids map[[2]uint64]bool) error {
	entries, _ := os.ReadDir("/var/run/netns")
	var errs []error
	for _, e := range entries {
		p := filepath.Join("/var/run/netns", e.Name())
		var st syscall.Stat_t
		if syscall.Stat(p, &st) != nil || !ids[[2]uint64{st.Dev, st.Ino}] {
			continue
		}
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, os.Remove(p))
	}
	return errors.Join(errs...)
}
