// Package namespaces reads the --watch-namespaces list that both binaries take, so that one flag
// value means the same namespaces to the controller, its --uninstall hook and the resolver.
package namespaces

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// Parse reads a comma-separated list of namespaces. Spaces around a name are trimmed, empty
// items dropped and repeated names kept once, in the order first given: "a," is just a, never
// "a and every namespace" (controller-runtime reads an empty name as all namespaces). No name
// at all, as in "" or ",", means every namespace. A name that cannot be a namespace is an
// error rather than a watch that would never see an object.
func Parse(list string) ([]string, error) {
	var out []string
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" || slices.Contains(out, name) {
			continue
		}
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			return nil, fmt.Errorf("%q is not a namespace name: %s", name, strings.Join(errs, "; "))
		}
		out = append(out, name)
	}
	return out, nil
}

// Cache is names, with extra added, as controller-runtime's cache takes namespaces
// (cache.Options.DefaultNamespaces, cache.ByObject.Namespaces). With no names it is nil, every
// namespace, and extra is not needed. An empty extra is skipped: as a key it would mean every
// namespace.
func Cache(names []string, extra ...string) map[string]cache.Config {
	if len(names) == 0 {
		return nil
	}
	m := make(map[string]cache.Config, len(names)+len(extra))
	for _, ns := range slices.Concat(names, extra) {
		if ns != "" {
			m[ns] = cache.Config{}
		}
	}
	return m
}
