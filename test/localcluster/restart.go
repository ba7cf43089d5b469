package localcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// command is what spawn started, recorded so that Restart can start it again as it was.
type command struct {
	Path string   `json:"path"`
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"`
}

func (o Options) recordCommand(name string, cmd *exec.Cmd) error {
	raw, err := json.Marshal(command{Path: cmd.Path, Args: cmd.Args, Env: cmd.Env, Dir: cmd.Dir})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(o.pids(), name+".cmd"), raw, 0o644)
}

// Restartable are the daemons a chaos test may restart: the cluster carries on without them
// for a moment, as a real one does. etcd and containerd are not among them.
var Restartable = []string{"kube-apiserver", "kube-proxy", "kube-controller-manager", "kube-scheduler", "kubelet", "coredns", "istiod"}

// Restart stops one daemon of the cluster by its recorded PID (SIGTERM, SIGKILL after two
// seconds) and starts it again with the command it was started with; for the API server it
// waits until it is ready again.
func (c *Cluster) Restart(ctx context.Context, name string) error {
	if !slices.Contains(Restartable, name) {
		return fmt.Errorf("%s cannot be restarted; these can: %v", name, Restartable)
	}
	if err := c.o.restart(name); err != nil {
		return err
	}
	if name == "kube-apiserver" {
		return c.o.wait(ctx, name, "https://127.0.0.1:6443/readyz")
	}
	return nil
}

// running says whether pid is a live process, not a zombie: a daemon that the calling process
// restarted earlier is its child, and stays a zombie once ended, until that process exits.
func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	return len(f) > 0 && f[0] != "Z"
}

func (o Options) restart(name string) error {
	raw, err := os.ReadFile(filepath.Join(o.pids(), name+".cmd"))
	if err != nil {
		return fmt.Errorf("no recorded command for %s: %w", name, err)
	}
	var rec command
	if err := json.Unmarshal(raw, &rec); err != nil {
		return fmt.Errorf("reading the recorded command of %s: %w", name, err)
	}
	pid, _ := readPID(filepath.Join(o.pids(), name+".pid"))
	if err := o.stop(name); err != nil {
		return err
	}
	// stop gives up after SIGKILL without waiting; a port still bound would fail the restart.
	for i := 0; i < 50 && pid > 1 && running(pid); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	cmd := &exec.Cmd{Path: rec.Path, Args: rec.Args, Env: rec.Env, Dir: rec.Dir}
	return o.spawn(name, cmd)
}
