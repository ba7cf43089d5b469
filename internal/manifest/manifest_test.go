package manifest

import "testing"

func TestDecode(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    []string
		wantErr bool
	}{
		"documents":       {in: "kind: A\nmetadata: {name: a}\n---\n# only a comment\n---\nkind: B\nmetadata: {name: b}\n", want: []string{"A/a", "B/b"}},
		"leading divider": {in: "---\nkind: A\nmetadata: {name: a}\n", want: []string{"A/a"}},
		"json":            {in: `{"kind": "A", "metadata": {"name": "a"}}`, want: []string{"A/a"}},
		"empty":           {in: "", want: nil},
		"broken":          {in: "kind: [A\n", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			objs, err := Decode([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Decode error = %v, want error %v", err, tc.wantErr)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.GetKind()+"/"+o.GetName())
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}
