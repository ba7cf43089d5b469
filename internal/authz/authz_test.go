package authz

import (
	"encoding/json"
	"net/http"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const (
	alice = "cluster.local/ns/shop/sa/alice"
	bob   = "cluster.local/ns/bank/sa/bob"
)

// ap parses a policy written as YAML with metadata (default shop/p) and spec. The spec is
// decoded strictly: the generated JSON decoder ignores unknown fields, so a misspelt field
// would make a row pass for the wrong reason.
func ap(t testing.TB, doc string) *securityv1.AuthorizationPolicy {
	t.Helper()
	var raw struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     json.RawMessage   `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(doc), &raw); err != nil {
		t.Fatalf("policy %q: %v", doc, err)
	}
	p := &securityv1.AuthorizationPolicy{ObjectMeta: raw.Metadata}
	if p.Namespace == "" {
		p.Namespace = "shop"
	}
	if p.Name == "" {
		p.Name = "p"
	}
	if len(raw.Spec) > 0 {
		if err := protojson.Unmarshal(raw.Spec, &p.Spec); err != nil {
			t.Fatalf("policy %q: %v", doc, err)
		}
	}
	return p
}

func aps(t testing.TB, docs []string) []*securityv1.AuthorizationPolicy {
	t.Helper()
	var ps []*securityv1.AuthorizationPolicy
	for _, d := range docs {
		ps = append(ps, ap(t, d))
	}
	return ps
}

// get is a GET of / on port 8080 from principal.
func get(principal string) Request {
	return Request{Principal: principal, Host: "shop.example.com", Method: "GET", Path: "/", Port: 8080, Headers: http.Header{}}
}

func with(r Request, edit func(*Request)) Request {
	edit(&r)
	return r
}

func TestEvaluate(t *testing.T) {
	allowAll := `{metadata: {name: all}, spec: {rules: [{}]}}`
	tests := map[string]struct {
		policies []string
		r        Request
		want     Decision
	}{
		"no policy allows": {
			r:    get(""),
			want: Decision{Allowed: true, Reason: "no ALLOW policy applies"},
		},
		"ALLOW without rules matches nothing": {
			policies: []string{`{spec: {action: ALLOW}}`},
			r:        get(alice),
			want:     Decision{Reason: "no ALLOW policy matched"},
		},
		"ALLOW with one empty rule matches everything, plain text too": {
			policies: []string{allowAll},
			r:        get(""),
			want:     Decision{Allowed: true, Policy: "shop/all", Reason: "allowed by ALLOW policy shop/all"},
		},
		"DENY without rules denies nothing": {
			policies: []string{`{spec: {action: DENY}}`},
			r:        get(alice),
			want:     Decision{Allowed: true, Reason: "no ALLOW policy applies"},
		},
		"DENY with one empty rule denies everything": {
			policies: []string{`{metadata: {name: none}, spec: {action: DENY, rules: [{}]}}`},
			r:        get(alice),
			want:     Decision{Policy: "shop/none", Reason: "denied by DENY policy shop/none"},
		},
		"DENY beats a matching ALLOW": {
			policies: []string{allowAll, `{metadata: {name: no-alice}, spec: {action: DENY, rules: [{from: [{source: {principals: ["` + alice + `"]}}]}]}}`},
			r:        get(alice),
			want:     Decision{Policy: "shop/no-alice", Reason: "denied by DENY policy shop/no-alice"},
		},
		"CUSTOM that matches denies, whatever ALLOW says": {
			policies: []string{allowAll, `{metadata: {name: ext}, spec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}}`},
			r:        get(alice),
			want:     Decision{Policy: "shop/ext", Reason: "denied by CUSTOM policy shop/ext: the resolver cannot consult its provider"},
		},
		"CUSTOM whose rules do not match asks no provider": {
			policies: []string{`{spec: {action: CUSTOM, provider: {name: opa}, rules: [{to: [{operation: {paths: ["/admin*"]}}]}]}}`},
			r:        get(alice),
			want:     Decision{Allowed: true, Reason: "no ALLOW policy applies"},
		},
		"AUDIT is ignored": {
			policies: []string{`{spec: {action: AUDIT, rules: [{}]}}`, `{spec: {action: AUDIT}}`},
			r:        get(alice),
			want:     Decision{Allowed: true, Reason: "no ALLOW policy applies"},
		},
		"dry-run DENY is not enforced": {
			policies: []string{`{metadata: {annotations: {istio.io/dry-run: "true"}}, spec: {action: DENY, rules: [{}]}}`},
			r:        get(alice),
			want:     Decision{Allowed: true, Reason: "no ALLOW policy applies"},
		},
		"dry-run ALLOW does not make ALLOW apply": {
			policies: []string{`{metadata: {annotations: {istio.io/dry-run: "true"}}, spec: {action: ALLOW}}`},
			r:        get(alice),
			want:     Decision{Allowed: true, Reason: "no ALLOW policy applies"},
		},
		"unparsable dry-run annotation enforces": {
			policies: []string{`{metadata: {annotations: {istio.io/dry-run: "yes please"}}, spec: {action: DENY, rules: [{}]}}`},
			r:        get(alice),
			want:     Decision{Policy: "shop/p", Reason: "denied by DENY policy shop/p"},
		},
		"dry-run CUSTOM still denies: Istio still asks its provider": {
			policies: []string{`{metadata: {annotations: {istio.io/dry-run: "true"}}, spec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}}`},
			r:        get(alice),
			want:     Decision{Policy: "shop/p", Reason: "denied by CUSTOM policy shop/p: the resolver cannot consult its provider"},
		},
		"a second ALLOW policy can allow": {
			policies: []string{
				`{metadata: {name: bob}, spec: {rules: [{from: [{source: {principals: ["` + bob + `"]}}]}]}}`,
				`{metadata: {name: alice}, spec: {rules: [{from: [{source: {principals: ["` + alice + `"]}}]}]}}`,
			},
			r:    get(alice),
			want: Decision{Allowed: true, Policy: "shop/alice", Reason: "allowed by ALLOW policy shop/alice"},
		},
		"an unsupported field in a DENY policy denies, and says so": {
			policies: []string{`{spec: {action: DENY, rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]}}`},
			r:        get(alice),
			want:     Decision{Policy: "shop/p", Reason: "denied by DENY policy shop/p, on a field the resolver cannot check"},
		},
		"an unsupported field in an ALLOW policy does not allow, and says so": {
			policies: []string{`{spec: {rules: [{when: [{key: "request.auth.claims[group]", values: [admin]}]}]}}`},
			r:        get(alice),
			want:     Decision{Reason: "no ALLOW policy matched (shop/p depends on a field the resolver cannot check)"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Evaluate(aps(t, tt.policies), tt.r); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestEvaluateMatching checks field semantics through one policy, by whether it allows (ALLOW)
// or denies (DENY).
func TestEvaluateMatching(t *testing.T) {
	tests := map[string]struct {
		policy  string
		r       Request
		allowed bool
	}{
		// principals
		"principals exact":                      {`{spec: {rules: [{from: [{source: {principals: ["` + alice + `"]}}]}]}}`, get(alice), true},
		"principals exact, other caller":        {`{spec: {rules: [{from: [{source: {principals: ["` + alice + `"]}}]}]}}`, get(bob), false},
		"principals prefix":                     {`{spec: {rules: [{from: [{source: {principals: ["cluster.local/ns/shop/*"]}}]}]}}`, get(alice), true},
		"principals suffix":                     {`{spec: {rules: [{from: [{source: {principals: ["*/sa/alice"]}}]}]}}`, get(alice), true},
		"principals any needs mTLS":             {`{spec: {rules: [{from: [{source: {principals: ["*"]}}]}]}}`, get(""), false},
		"notPrincipals allow a plain-text call": {`{spec: {rules: [{from: [{source: {notPrincipals: ["` + bob + `"]}}]}]}}`, get(""), true},
		"notPrincipals exclude their caller":    {`{spec: {rules: [{from: [{source: {notPrincipals: ["` + bob + `"]}}]}]}}`, get(bob), false},
		"DENY notPrincipals any denies plain text": {
			`{spec: {action: DENY, rules: [{from: [{source: {notPrincipals: ["*"]}}]}]}}`, get(""), false},
		"DENY notPrincipals any lets mTLS in": {
			`{spec: {action: DENY, rules: [{from: [{source: {notPrincipals: ["*"]}}]}]}}`, get(bob), true},
		"DENY principals does not deny plain text": {
			`{spec: {action: DENY, rules: [{from: [{source: {principals: ["` + bob + `"]}}]}]}}`, get(""), true},
		"principal in another trust domain is undecided for ALLOW": {
			`{spec: {rules: [{from: [{source: {principals: ["` + alice + `"]}}]}]}}`, get("example.org/ns/shop/sa/alice"), false},
		"principal in another trust domain is undecided for DENY": {
			`{spec: {action: DENY, rules: [{from: [{source: {principals: ["` + alice + `"]}}]}]}}`, get("example.org/ns/shop/sa/alice"), false},
		"principal with any trust domain matches every one": {
			`{spec: {rules: [{from: [{source: {principals: ["*/ns/shop/sa/alice"]}}]}]}}`, get("example.org/ns/shop/sa/alice"), true},

		// namespaces, service accounts, trust domains
		"namespaces from the principal": {`{spec: {rules: [{from: [{source: {namespaces: [shop]}}]}]}}`, get(alice), true},
		"namespaces, other namespace":   {`{spec: {rules: [{from: [{source: {namespaces: [shop]}}]}]}}`, get(bob), false},
		"namespaces prefix":             {`{spec: {rules: [{from: [{source: {namespaces: ["sh*"]}}]}]}}`, get(alice), true},
		"namespaces need mTLS":          {`{spec: {rules: [{from: [{source: {namespaces: ["*"]}}]}]}}`, get(""), false},
		"DENY notNamespaces denies outsiders": {
			`{spec: {action: DENY, rules: [{from: [{source: {notNamespaces: [shop]}}]}]}}`, get(bob), false},
		"DENY notNamespaces denies plain text": {
			`{spec: {action: DENY, rules: [{from: [{source: {notNamespaces: [shop]}}]}]}}`, get(""), false},
		"serviceAccounts ns/sa":                    {`{spec: {rules: [{from: [{source: {serviceAccounts: [shop/alice]}}]}]}}`, get(alice), true},
		"serviceAccounts sa is in the policy's ns": {`{metadata: {namespace: bank}, spec: {rules: [{from: [{source: {serviceAccounts: [alice]}}]}]}}`, get(alice), false},
		"serviceAccounts is not a prefix match":    {`{spec: {rules: [{from: [{source: {serviceAccounts: [shop/ali]}}]}]}}`, get(alice), false},
		"notServiceAccounts":                       {`{spec: {rules: [{from: [{source: {notServiceAccounts: [shop/alice]}}]}]}}`, get(bob), true},
		"trustDomains exact":                       {`{spec: {rules: [{from: [{source: {trustDomains: [cluster.local]}}]}]}}`, get(alice), true},
		"trustDomains glob stays in the trust domain": {
			`{spec: {rules: [{from: [{source: {trustDomains: ["cluster*shop"]}}]}]}}`, get(alice), false},
		"trustDomains suffix": {`{spec: {rules: [{from: [{source: {trustDomains: ["*.local"]}}]}]}}`, get(alice), true},

		// operations
		"hosts ignore case":             {`{spec: {rules: [{to: [{operation: {hosts: [Shop.Example.COM]}}]}]}}`, get(alice), true},
		"hosts do not drop the port":    {`{spec: {rules: [{to: [{operation: {hosts: [shop.example.com]}}]}]}}`, with(get(alice), func(r *Request) { r.Host = "shop.example.com:8080" }), false},
		"hosts suffix ignores case":     {`{spec: {rules: [{to: [{operation: {hosts: ["*.EXAMPLE.com"]}}]}]}}`, get(alice), true},
		"methods are case-sensitive":    {`{spec: {rules: [{to: [{operation: {methods: [get]}}]}]}}`, get(alice), false},
		"paths prefix":                  {`{spec: {rules: [{to: [{operation: {paths: ["/api/*"]}}]}]}}`, with(get(alice), func(r *Request) { r.Path = "/api/v1" }), true},
		"paths suffix":                  {`{spec: {rules: [{to: [{operation: {paths: ["*.png"]}}]}]}}`, with(get(alice), func(r *Request) { r.Path = "/a.png" }), true},
		"notPaths":                      {`{spec: {rules: [{to: [{operation: {notPaths: ["/admin*"]}}]}]}}`, with(get(alice), func(r *Request) { r.Path = "/admin/x" }), false},
		"path template does not allow":  {`{spec: {rules: [{to: [{operation: {paths: ["/api/{*}"]}}]}]}}`, with(get(alice), func(r *Request) { r.Path = "/api/x" }), false},
		"path template denies":          {`{spec: {action: DENY, rules: [{to: [{operation: {paths: ["/admin/{**}"]}}]}]}}`, get(alice), false},
		"ports":                         {`{spec: {rules: [{to: [{operation: {ports: ["8080"]}}]}]}}`, get(alice), true},
		"ports, other port":             {`{spec: {rules: [{to: [{operation: {ports: ["9090"]}}]}]}}`, get(alice), false},
		"unknown port does not allow":   {`{spec: {rules: [{to: [{operation: {notPorts: ["9090"]}}]}]}}`, with(get(alice), func(r *Request) { r.Port = 0 }), false},
		"unknown port denies":           {`{spec: {action: DENY, rules: [{to: [{operation: {ports: ["9090"]}}]}]}}`, with(get(alice), func(r *Request) { r.Port = 0 }), false},
		"bad port voids the ALLOW rule": {`{spec: {rules: [{from: [{source: {principals: ["` + alice + `"]}}], to: [{operation: {ports: ["8080", http]}}]}]}}`, get(alice), false},
		"bad port is dropped from DENY": {`{spec: {action: DENY, rules: [{to: [{operation: {ports: [http, "9090"]}}]}]}}`, get(alice), true},
		"DENY whose only notPorts are bad denies all": {
			`{spec: {action: DENY, rules: [{to: [{operation: {notPorts: [http]}}]}]}}`, get(alice), false},
		"bad IP voids the ALLOW rule although another source matches": {
			`{spec: {rules: [{from: [{source: {ipBlocks: [not-an-ip]}}, {source: {principals: ["` + alice + `"]}}]}]}}`, get(alice), false},
		"unsupported source does not hide a matching one": {
			`{spec: {rules: [{from: [{source: {ipBlocks: [10.0.0.0/8]}}, {source: {principals: ["` + alice + `"]}}]}]}}`, get(alice), true},

		// rule structure
		"from and to must both match": {
			`{spec: {rules: [{from: [{source: {principals: ["` + alice + `"]}}], to: [{operation: {methods: [POST]}}]}]}}`, get(alice), false},
		"any to matches": {
			`{spec: {rules: [{to: [{operation: {methods: [POST]}}, {operation: {methods: [GET]}}]}]}}`, get(alice), true},
		"fields of one operation all match": {
			`{spec: {rules: [{to: [{operation: {methods: [GET], paths: [/admin]}}]}]}}`, get(alice), false},

		// when
		"when header":                   {`{spec: {rules: [{when: [{key: "request.headers[X-Team]", values: [blue]}]}]}}`, with(get(alice), func(r *Request) { r.Headers.Set("X-Team", "blue") }), true},
		"when header name ignores case": {`{spec: {rules: [{when: [{key: "request.headers[x-team]", values: [blue]}]}]}}`, with(get(alice), func(r *Request) { r.Headers.Set("X-Team", "blue") }), true},
		"when header missing":           {`{spec: {rules: [{when: [{key: "request.headers[X-Team]", values: ["*"]}]}]}}`, get(alice), false},
		"when header notValues match a missing header": {
			`{spec: {rules: [{when: [{key: "request.headers[X-Team]", notValues: [red]}]}]}}`, get(alice), true},
		"when header values joined with commas": {
			`{spec: {rules: [{when: [{key: "request.headers[X-Team]", values: ["blue,red"]}]}]}}`,
			with(get(alice), func(r *Request) { r.Headers["X-Team"] = []string{"blue", "red"} }), true},
		"when every condition must hold": {
			`{spec: {rules: [{when: [{key: source.namespace, values: [shop]}, {key: destination.port, values: ["9090"]}]}]}}`, get(alice), false},
		"when source.principal": {`{spec: {rules: [{when: [{key: source.principal, values: ["` + alice + `"]}]}]}}`, get(alice), true},
		"when unknown key voids the ALLOW rule": {
			`{spec: {rules: [{when: [{key: request.colour, values: [blue]}]}]}}`, get(alice), false},
		"when unknown key denies": {
			`{spec: {action: DENY, rules: [{when: [{key: request.colour, values: [blue]}]}]}}`, get(alice), false},
		"when Host pseudo-header is unsupported": {
			`{spec: {rules: [{when: [{key: "request.headers[:authority]", values: ["*"]}]}]}}`, get(alice), false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := Evaluate([]*securityv1.AuthorizationPolicy{ap(t, tt.policy)}, tt.r)
			if got.Allowed != tt.allowed {
				t.Errorf("allowed %v (%s), want %v", got.Allowed, got.Reason, tt.allowed)
			}
		})
	}
}

func TestEvaluateSkipsNilRules(t *testing.T) {
	allow, deny := ap(t, `{spec: {action: ALLOW}}`), ap(t, `{spec: {action: DENY}}`)
	allow.Spec.Rules = append(allow.Spec.Rules, nil)
	deny.Spec.Rules = append(deny.Spec.Rules, nil)
	if got := Evaluate([]*securityv1.AuthorizationPolicy{deny}, get(alice)); !got.Allowed {
		t.Errorf("DENY with a nil rule: %+v, want allowed", got)
	}
	if got := Evaluate([]*securityv1.AuthorizationPolicy{allow}, get(alice)); got.Allowed {
		t.Errorf("ALLOW with only a nil rule: %+v, want denied", got)
	}
}

func TestEvaluateUnsure(t *testing.T) {
	allowBob := `{metadata: {name: bob}, spec: {rules: [{from: [{source: {principals: ["` + bob + `"]}}]}]}}`
	allowAlice := `{metadata: {name: alice}, spec: {rules: [{from: [{source: {principals: ["` + alice + `"]}}]}]}}`
	tests := map[string]struct {
		sure, unsure []string
		r            Request
		want         Decision
	}{
		"an unsure ALLOW that matches allows": {
			unsure: []string{allowAlice},
			r:      get(alice),
			want:   Decision{Allowed: true, Policy: "shop/alice", Reason: "allowed by ALLOW policy shop/alice"},
		},
		"an unsure ALLOW that does not match denies": {
			unsure: []string{allowBob},
			r:      get(alice),
			want:   Decision{Policy: "shop/bob", Reason: "not matched by ALLOW policy shop/bob, which may apply"},
		},
		"an unsure ALLOW cannot add to a sure one": {
			sure:   []string{allowBob},
			unsure: []string{allowAlice},
			r:      get(alice),
			want:   Decision{Reason: "no ALLOW policy matched"},
		},
		"an unsure DENY denies": {
			sure:   []string{allowAlice},
			unsure: []string{`{metadata: {name: deny}, spec: {action: DENY, rules: [{}]}}`},
			r:      get(alice),
			want:   Decision{Policy: "shop/deny", Reason: "denied by DENY policy shop/deny"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := EvaluateUnsure(aps(t, tt.sure), aps(t, tt.unsure), tt.r); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPolicyHelperIsStrict(t *testing.T) {
	var fatal bool
	ft := &fatalRecorder{TB: t, fatal: &fatal}
	func() {
		defer func() { _ = recover() }()
		ap(ft, `{spec: {rules: [{from: [{source: {principal: [x]}}]}]}}`)
	}()
	if !fatal {
		t.Error("a misspelt field was accepted")
	}
}

// fatalRecorder records Fatalf instead of stopping the test.
type fatalRecorder struct {
	testing.TB
	fatal *bool
}

func (f *fatalRecorder) Fatalf(string, ...any) {
	*f.fatal = true
	panic("fatal")
}

func BenchmarkEvaluate(b *testing.B) {
	policies := aps(b, []string{
		`{spec: {action: DENY, rules: [{from: [{source: {notNamespaces: [shop, bank]}}]}, {to: [{operation: {paths: ["/admin*"]}}]}]}}`,
		`{spec: {rules: [{from: [{source: {principals: ["` + bob + `"]}}]}, {from: [{source: {namespaces: [shop]}}], to: [{operation: {methods: [GET, HEAD], ports: ["8080"]}}]}]}}`,
	})
	r := get(alice)
	b.ReportAllocs()
	for b.Loop() {
		if !Evaluate(policies, r).Allowed {
			b.Fatal("denied")
		}
	}
}
