package localcluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDescendantsFindsGrandchildren(t *testing.T) {
	// sh starts sleep in the background and waits: sleep is a child of sh, a grandchild of us.
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 32)
	n, err := out.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	sleepPID, err := strconv.Atoi(string(buf[:n-1]))
	if err != nil {
		t.Fatalf("reading the sleep PID from %q: %v", buf[:n], err)
	}
	t.Cleanup(func() { _ = (&os.Process{Pid: sleepPID}).Kill() })

	got := descendants([]int{os.Getpid()})
	for _, want := range []int{cmd.Process.Pid, sleepPID} {
		if !slices.Contains(got, want) {
			t.Errorf("descendants of the test process = %v, want it to contain %d", got, want)
		}
	}
	if slices.Contains(descendants([]int{sleepPID}), cmd.Process.Pid) {
		t.Errorf("a parent was listed as a descendant of its child")
	}
}

func TestStopLeavesForeignPIDsAlone(t *testing.T) {
	o := Options{Dir: t.TempDir()}
	if err := os.MkdirAll(o.pids(), 0o755); err != nil {
		t.Fatal(err)
	}
	// A process that does not name the state directory stands for a reused PID.
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pidFile := filepath.Join(o.pids(), "stranger.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := o.stop("stranger"); err != nil {
		t.Fatal(err)
	}
	if !alive(cmd.Process.Pid) {
		t.Errorf("stop killed PID %d, whose command line does not name %s", cmd.Process.Pid, o.run())
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("stale PID file still there: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("stop waited %s for a process it does not own", d)
	}
}

// Restart ends a daemon by its recorded PID and starts the recorded command again.
func TestRestartStartsTheRecordedCommandAgain(t *testing.T) {
	o := Options{Dir: t.TempDir()}
	for _, d := range []string{o.logs(), o.pids()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The run directory in the command line is how stop recognises a process as this cluster's.
	if err := o.spawn("kube-proxy", exec.Command("sh", "-c", "sleep 30", o.run())); err != nil {
		t.Fatal(err)
	}
	first, ok := readPID(filepath.Join(o.pids(), "kube-proxy.pid"))
	if !ok {
		t.Fatal("no PID recorded")
	}
	t.Cleanup(func() { _ = o.stop("kube-proxy") })
	if err := o.restart("kube-proxy"); err != nil {
		t.Fatal(err)
	}
	second, ok := readPID(filepath.Join(o.pids(), "kube-proxy.pid"))
	if !ok || second == first {
		t.Fatalf("PID after the restart = %d (%v), before %d", second, ok, first)
	}
	if running(first) {
		t.Errorf("the first process %d still runs", first)
	}
	if !running(second) || !mentions(second, o.run()) {
		t.Errorf("the restarted process %d does not run the recorded command", second)
	}
	status, err := Status(o)
	if err != nil || !strings.Contains(status, "running") || strings.Contains(status, ".cmd") {
		t.Errorf("Status = %q, %v", status, err)
	}
}
