package localcluster

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

const cgroupMount = "/sys/fs/cgroup"

// cgroupRoot is the cgroup under which this cluster's kubelet puts its pods. Each cluster has its
// own, because a kubelet treats every pod cgroup under its root that it does not know as an
// orphan and kills it: two clusters under one root would end each other's pods.
func (o Options) cgroupRoot() string { return "/" + o.Netns }

// hierarchies lists the mounted cgroup v1 hierarchies (and the v2 one of a hybrid host).
func hierarchies() []string {
	entries, _ := os.ReadDir(cgroupMount)
	var out []string
	for _, e := range entries {
		dir := filepath.Join(cgroupMount, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err == nil {
			out = append(out, dir)
		}
	}
	return out
}

// makeCgroupRoot creates the root in every hierarchy; kubelet refuses a root that is missing
// from any of them. A new cpuset cgroup starts with no CPUs or memory nodes, so it gets its
// parent's.
func (o Options) makeCgroupRoot() error {
	for _, h := range hierarchies() {
		dir := filepath.Join(h, o.cgroupRoot())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if filepath.Base(h) != "cpuset" {
			continue
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(h, f))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeCgroupRoot removes the root's tree, deepest first. It runs after every process of the
// cluster has ended; a cgroup that still holds a task stays and is reported.
func (o Options) removeCgroupRoot() error {
	var errs []error
	for _, h := range hierarchies() {
		root := filepath.Join(h, o.cgroupRoot())
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs)
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
