package repo

import (
	"os"
	"strings"
	"testing"
)

func TestRootHoldsTheModule(t *testing.T) {
	b, err := os.ReadFile(Path("go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(string(b), "\n"); first != "module github.com/elasti-dev/elasti" {
		t.Errorf("go.mod at Root() begins %q, want elasti's module", first)
	}
}
