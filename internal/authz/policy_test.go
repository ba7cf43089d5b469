package authz

import "testing"

func TestUnsupported(t *testing.T) {
	tests := map[string]struct {
		policy string
		want   string
	}{
		"principals, namespaces, hosts, paths, ports": {
			`{spec: {rules: [{from: [{source: {principals: [a], notNamespaces: [b]}}], to: [{operation: {hosts: [h], paths: ["/x*"], ports: ["80"]}}]}]}}`, ""},
		"serviceAccounts and trustDomains": {
			`{spec: {rules: [{from: [{source: {serviceAccounts: [shop/a]}}, {source: {trustDomains: [td]}}]}]}}`, ""},
		"supported when keys": {
			`{spec: {rules: [{when: [{key: source.principal, values: [a]}, {key: source.namespace, values: [b]}, {key: source.serviceAccount, values: [c]}, {key: source.trustDomain, values: [d]}, {key: destination.port, values: ["80"]}, {key: "request.headers[x-team]", values: [e]}]}]}}`, ""},
		"CUSTOM action":                 {`{spec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}}`, "action"},
		"requestPrincipals":             {`{spec: {rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]}}`, "rules[0].from[0].source.requestPrincipals"},
		"notIpBlocks in a later source": {`{spec: {rules: [{from: [{source: {principals: [a]}}, {source: {notIpBlocks: [10.0.0.0/8]}}]}]}}`, "rules[0].from[1].source.notIpBlocks"},
		"remoteIpBlocks":                {`{spec: {action: DENY, rules: [{from: [{source: {remoteIpBlocks: [1.2.3.4]}}]}]}}`, "rules[0].from[0].source.remoteIpBlocks"},
		"path template in a later rule": {`{spec: {rules: [{}, {to: [{operation: {paths: ["/api/{*}"]}}]}]}}`, "rules[1].to[0].operation.paths"},
		"notPaths template":             {`{spec: {rules: [{to: [{operation: {notPaths: ["/{**}/x"]}}]}]}}`, "rules[0].to[0].operation.notPaths"},
		"when source.ip":                {`{spec: {rules: [{when: [{key: source.namespace, values: [a]}, {key: source.ip, values: [10.0.0.1]}]}]}}`, "rules[0].when[1](source.ip)"},
		"when JWT claim":                {`{spec: {rules: [{when: [{key: "request.auth.claims[iss]", values: [x]}]}]}}`, "rules[0].when[0](request.auth.claims[iss])"},
		"when pseudo-header":            {`{spec: {rules: [{when: [{key: "request.headers[:authority]", values: [x]}]}]}}`, "rules[0].when[0](request.headers[:authority])"},
		"when unknown key":              {`{spec: {rules: [{when: [{key: request.colour, values: [x]}]}]}}`, "rules[0].when[0](request.colour)"},
		"AUDIT has nothing to check":    {`{spec: {action: AUDIT, rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]}}`, ""},
		"dry-run DENY has nothing to check": {
			`{metadata: {annotations: {istio.io/dry-run: "true"}}, spec: {action: DENY, rules: [{from: [{source: {ipBlocks: [1.2.3.4]}}]}]}}`, ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Unsupported(ap(t, tt.policy)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDeniesPrincipal(t *testing.T) {
	const resolver = "cluster.local/ns/elasti/sa/elasti-resolver"
	tests := map[string]struct {
		policy    string
		principal string
		want      bool
	}{
		"DENY of the principal": {
			`{spec: {action: DENY, rules: [{from: [{source: {principals: ["` + resolver + `"]}}]}]}}`, resolver, true},
		"DENY of another principal": {
			`{spec: {action: DENY, rules: [{from: [{source: {principals: ["` + bob + `"]}}]}]}}`, resolver, false},
		"DENY of everyone but another principal": {
			`{spec: {action: DENY, rules: [{from: [{source: {notPrincipals: ["` + bob + `"]}}]}]}}`, resolver, true},
		"DENY of the namespace on some paths: request fields assumed to match": {
			`{spec: {action: DENY, rules: [{from: [{source: {namespaces: [elasti]}}], to: [{operation: {paths: ["/admin*"], notMethods: [GET]}}]}]}}`, resolver, true},
		"DENY of every other namespace": {
			`{spec: {action: DENY, rules: [{from: [{source: {notNamespaces: [elasti]}}]}]}}`, resolver, false},
		"DENY of another service account on a header": {
			`{spec: {action: DENY, rules: [{from: [{source: {serviceAccounts: [shop/alice]}}], when: [{key: "request.headers[x]", values: [blue]}]}]}}`, resolver, false},
		"DENY by IP block could hit any replay": {
			`{spec: {action: DENY, rules: [{from: [{source: {notIpBlocks: [10.0.0.0/8]}}]}]}}`, resolver, true},
		"DENY by when source.namespace": {
			`{spec: {action: DENY, rules: [{when: [{key: source.namespace, notValues: [elasti]}]}]}}`, resolver, false},
		"DENY of the principal in another trust domain may be an alias": {
			`{spec: {action: DENY, rules: [{from: [{source: {principals: ["` + resolver + `"]}}]}]}}`, "example.org/ns/elasti/sa/elasti-resolver", true},
		"DENY without rules":    {`{spec: {action: DENY}}`, resolver, false},
		"DENY of everything":    {`{spec: {action: DENY, rules: [{}]}}`, resolver, true},
		"CUSTOM counts as DENY": {`{spec: {action: CUSTOM, provider: {name: opa}, rules: [{to: [{operation: {paths: [/x]}}]}]}}`, resolver, true},
		"ALLOW denies nothing":  {`{spec: {action: ALLOW}}`, resolver, false},
		"dry-run DENY denies nothing": {
			`{metadata: {annotations: {istio.io/dry-run: "true"}}, spec: {action: DENY, rules: [{}]}}`, resolver, false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := DeniesPrincipal(ap(t, tt.policy), tt.principal); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
