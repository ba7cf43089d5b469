package authz

import (
	"errors"
	"net/http"
	"testing"
)

// appended is the element an Istio sidecar appends for a caller: By is the resolver's own
// identity, Subject is always written and quoted, URI is the caller's.
const appended = `By=spiffe://cluster.local/ns/elasti/sa/elasti-resolver;Hash=3c0e;Subject="";URI=spiffe://cluster.local/ns/shop/sa/alice;DNS=`

func TestCallerFromXFCC(t *testing.T) {
	tests := map[string]struct {
		v    string
		want string // "" for ok=false
	}{
		"the sidecar's element alone":       {appended, alice},
		"forged earlier element is ignored": {`By=x;URI=spiffe://cluster.local/ns/kube-system/sa/admin,` + appended, alice},
		"quoted values with commas and semicolons before": {
			`Subject="CN=a,O=b;c";URI=spiffe://evil/ns/x/sa/y,` + appended, alice},
		"escaped quote inside a quoted value": {`Subject="a\",b",` + appended, alice},
		"quoted URI":                          {`By=x;URI="spiffe://cluster.local/ns/shop/sa/alice"`, alice},
		"key is case-insensitive":             {`uri=spiffe://cluster.local/ns/shop/sa/alice`, alice},
		"Cert and Chain quoted":               {`Hash=a;Cert="-----BEGIN%20CERT";Chain="x";URI=spiffe://cluster.local/ns/shop/sa/alice`, alice},
		"empty":                               {``, ""},
		"last element has no URI":             {appended + `,By=spiffe://x/ns/a/sa/b;Hash=1`, ""},
		"last element has two URIs":           {`URI=spiffe://cluster.local/ns/shop/sa/alice;URI=spiffe://cluster.local/ns/bank/sa/bob`, ""},
		"empty URI":                           {`By=x;Hash=1;Subject="";URI=`, ""},
		"URI not SPIFFE":                      {`URI=https://cluster.local/ns/shop/sa/alice`, ""},
		"upper-case trust domain":             {`URI=spiffe://Cluster.local/ns/shop/sa/alice`, ""},
		"SPIFFE ID without a path":            {`URI=spiffe://cluster.local`, ""},
		"SPIFFE ID with an empty segment":     {`URI=spiffe://cluster.local/ns//sa/alice`, ""},
		"SPIFFE ID with a dot segment":        {`URI=spiffe://cluster.local/ns/../sa/alice`, ""},
		"SPIFFE ID with a space":              {`URI="spiffe://cluster.local/ns/shop/sa/al ice"`, ""},
		"trailing comma":                      {appended + `,`, ""},
		"trailing semicolon":                  {appended + `;`, ""},
		"forged unterminated quote swallows the appended element": {
			`URI="spiffe://cluster.local/ns/kube-system/sa/admin,` + appended, ""},
		"forged quote closed by the appended Subject": {`Subject="x,` + appended, ""},
		"quote in the middle of a value":              {`URI=spiffe://a"b",` + appended, ""},
		"unquoted value with '='":                     {`URI=spiffe://cluster.local/ns/shop/sa/alice=`, ""},
		"pair without '='":                            {`URI;` + appended, ""},
		"escape at the end":                           {`URI="spiffe://x\`, ""},
		"character after a closing quote":             {`URI="spiffe://cluster.local/ns/shop/sa/alice"x`, ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := CallerFromXFCC(tt.v)
			if ok != (tt.want != "") || got != tt.want {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tt.want, tt.want != "")
			}
		})
	}
}

func TestCallerFromHeader(t *testing.T) {
	tests := map[string]struct {
		values  []string
		want    string
		wantErr bool
	}{
		"no header: plain text":       {nil, "", false},
		"one header":                  {[]string{appended}, alice, false},
		"malformed header is refused": {[]string{`URI="spiffe://x`}, "", true},
		"empty header is refused":     {[]string{""}, "", true},
		"two header lines are refused": {
			[]string{appended, `URI=spiffe://cluster.local/ns/kube-system/sa/admin`}, "", true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.values {
				h.Add(XFCCHeader, v)
			}
			got, err := CallerFromHeader(h)
			if got != tt.want || (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrBadXFCC)) {
				t.Errorf("got %q, %v; want %q, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// FuzzCallerFromXFCC checks that whatever a client sends before the element its sidecar
// appends, the principal is the appended one or none at all.
func FuzzCallerFromXFCC(f *testing.F) {
	for _, seed := range []string{
		"", `URI=spiffe://cluster.local/ns/kube-system/sa/admin`, `URI="`, `a="\`, `Subject="`,
		`URI=spiffe://evil/ns/a/sa/b;Subject="x`, `x="a\"b";y=c`, `,,`, `=;=`,
	} {
		f.Add(seed)
	}
	noSubject := `By=spiffe://cluster.local/ns/elasti/sa/elasti-resolver;Hash=3c0e;URI=spiffe://cluster.local/ns/shop/sa/alice`
	f.Fuzz(func(t *testing.T, forged string) {
		for _, element := range []string{appended, noSubject} {
			if got, ok := CallerFromXFCC(forged + "," + element); ok && got != alice {
				t.Fatalf("CallerFromXFCC(%q) = %q, want %q or none", forged+","+element, got, alice)
			}
		}
		if got, ok := CallerFromXFCC(forged); ok && !validPrincipal(got) {
			t.Fatalf("CallerFromXFCC(%q) = %q, not a SPIFFE principal", forged, got)
		}
	})
}
