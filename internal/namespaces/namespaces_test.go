package namespaces

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := map[string]struct {
		list    string
		want    []string
		wantErr bool
	}{
		"empty":                  {list: ""},
		"only a comma":           {list: ","},
		"only commas and spaces": {list: " , ,, "},
		"one":                    {list: "a", want: []string{"a"}},
		"trailing comma":         {list: "a,", want: []string{"a"}},
		"leading comma":          {list: ",a", want: []string{"a"}},
		"spaces around names":    {list: " a , b ", want: []string{"a", "b"}},
		"empty item between":     {list: "a,,b", want: []string{"a", "b"}},
		"duplicates":             {list: "a,b,a, b", want: []string{"a", "b"}},
		"order kept":             {list: "shop,payments,elasti-system", want: []string{"shop", "payments", "elasti-system"}},
		"upper case":             {list: "Shop", wantErr: true},
		"space inside a name":    {list: "a b", wantErr: true},
		"other separator":        {list: "a;b", wantErr: true},
		"longest":                {list: strings.Repeat("a", 63), want: []string{strings.Repeat("a", 63)}},
		"too long":               {list: strings.Repeat("a", 64), wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Parse(tc.list)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Parse(%q) error = %v, want error %v", tc.list, err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Parse(%q) = %q, want %q", tc.list, got, tc.want)
			}
		})
	}
}

func TestCache(t *testing.T) {
	tests := map[string]struct {
		names, extra []string
		want         []string // keys; nil for a nil map
	}{
		"no names is every namespace": {extra: []string{"istio-system"}},
		"names":                       {names: []string{"a", "b"}, want: []string{"a", "b"}},
		"with extra":                  {names: []string{"a"}, extra: []string{"elasti-system", "istio-system"}, want: []string{"a", "elasti-system", "istio-system"}},
		"extra already named":         {names: []string{"a"}, extra: []string{"a"}, want: []string{"a"}},
		"empty extra skipped":         {names: []string{"a"}, extra: []string{""}, want: []string{"a"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Cache(tc.names, tc.extra...)
			if tc.want == nil {
				if got != nil {
					t.Fatalf("Cache = %v, want nil (every namespace)", got)
				}
				return
			}
			if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, tc.want) {
				t.Errorf("Cache keys = %q, want %q", keys, tc.want)
			}
		})
	}
}
