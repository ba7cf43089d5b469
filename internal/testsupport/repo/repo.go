package repo

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Root is the root of the elasti module.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Path is the file or directory at elem below the root, such as Path("charts", "elasti").
func Path(elem ...string) string {
	return filepath.Join(append([]string{Root()}, elem...)...)
}

// IstioCRDs is the CRD file of the istio.io/api module that go.mod pins, never a copy.
func IstioCRDs() (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api")
	cmd.Dir = Root() // the module whose go.mod pins it, whatever the caller's directory
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating istio.io/api in the module cache: %w", err)
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "kubernetes", "customresourcedefinitions.gen.yaml")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("istio CRDs: %w", err)
	}
	return path, nil
}
