package repo

import (
	"encoding/json"
	"errors"
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

// ToolModuleFile is the file at rel in module, as the tool module test/tools/crds pins it (KEDA,
// Argo Rollouts), never a copy. go mod download finds it in the module cache, or downloads it,
// and checks it against that module's go.sum.
func ToolModuleFile(module, rel string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = Path("test", "tools", "crds")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("go mod download %s: %w", module, err)
	}
	var m struct{ Dir, Version, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", err
	}
	if m.Error != "" || m.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %s", module, m.Error)
	}
	path := filepath.Join(m.Dir, rel)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s@%s ships no %s: %w", module, m.Version, rel, err)
	}
	return path, nil
}

// KEDACRDs is KEDA's ScaledObject CRD, the one kind of KEDA's that elasti reads and patches.
func KEDACRDs() (string, error) {
	return ToolModuleFile("github.com/kedacore/keda/v2", "config/crd/bases/keda.sh_scaledobjects.yaml")
}
