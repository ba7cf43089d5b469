package authz

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// XFCCHeader is the header in which the resolver's sidecar passes on the caller's certificate.
const XFCCHeader = "X-Forwarded-Client-Cert"

// ErrBadXFCC is returned by CallerFromHeader for an x-forwarded-client-cert that cannot be
// trusted. Such a request must be refused: treating it as plain text would let a caller escape
// a DENY policy on its principal by spoiling the header its sidecar appends to.
var ErrBadXFCC = errors.New("untrusted x-forwarded-client-cert")

// CallerFromHeader returns the caller's principal from the headers the resolver's sidecar
// forwarded: "" and no error without the header (the sidecar removes it from plain-text
// connections), ErrBadXFCC when it is there but malformed, not SPIFFE, or sent more than once
// (Envoy joins repeated lines into one, so several lines did not come from it).
func CallerFromHeader(h http.Header) (string, error) {
	values := h.Values(XFCCHeader)
	switch len(values) {
	case 0:
		return "", nil
	case 1:
		if principal, ok := CallerFromXFCC(values[0]); ok {
			return principal, nil
		}
		return "", fmt.Errorf("%w: malformed, or its last element has not exactly one SPIFFE URI", ErrBadXFCC)
	}
	return "", fmt.Errorf("%w: %d header lines", ErrBadXFCC, len(values))
}

// CallerFromXFCC returns the principal of the last element of an x-forwarded-client-cert header value (Envoy's format: elements separated by ',', key=value pairs by ';', values may be double-quoted with escaped quotes/commas/semicolons inside quotes), taken from its URI key "spiffe://td/ns/x/sa/y" -> "td/ns/x/sa/y". The last element is the one the resolver's own sidecar appended (Istio's sidecar inbound uses APPEND_FORWARD or SANITIZE_SET and strips the header from non-mTLS connections); earlier elements may be forged by the client. ok=false if absent, malformed, or the URI is not a spiffe URI.
//
// The whole value is parsed, not just split at the last comma, since a forged element can open
// a quote that hides the appended element's commas. A quote may only open a value and must
// end it; keys are case-insensitive. The last element must have exactly one URI key (Envoy
// writes one per URI SAN) and its principal must be a SPIFFE ID's trust domain and path.
func CallerFromXFCC(v string) (principal string, ok bool) {
	uri, ok := lastURI(v)
	if !ok {
		return "", false
	}
	principal, ok = strings.CutPrefix(unquote(uri), spiffePrefix)
	if !ok || !validPrincipal(principal) {
		return "", false
	}
	return principal, true
}

// lastURI returns the raw value of the one URI key of v's last element.
func lastURI(v string) (string, bool) {
	const (
		inKey = iota
		valueStart
		inRaw
		inQuoted
		inEscape
		afterQuote
	)
	state, keyStart, valueAt := inKey, 0, 0
	var uri string
	uris := 0
	for i := 0; i <= len(v); i++ {
		c := byte(',') // the end of v ends the last element
		if i < len(v) {
			c = v[i]
		}
		switch state {
		case inKey:
			switch c {
			case '=':
				if i == keyStart {
					return "", false
				}
				state, valueAt = valueStart, i+1
				continue
			case ',', ';', '"':
				return "", false
			}
			continue
		case valueStart, inRaw:
			switch c {
			case '"':
				if state != valueStart {
					return "", false
				}
				state = inQuoted
				continue
			case '=':
				return "", false
			case ',', ';':
			default:
				state = inRaw
				continue
			}
		case inQuoted:
			switch c {
			case '\\':
				state = inEscape
			case '"':
				state = afterQuote
			}
			if i == len(v) {
				return "", false
			}
			continue
		case inEscape:
			if i == len(v) {
				return "", false
			}
			state = inQuoted
			continue
		case afterQuote:
			if c != ',' && c != ';' {
				return "", false
			}
		}
		// c ends a pair: ';' within an element, ',' between elements.
		if strings.EqualFold(v[keyStart:valueAt-1], "URI") {
			uri, uris = v[valueAt:i], uris+1
		}
		if c == ',' && i < len(v) {
			uri, uris = "", 0
		}
		state, keyStart = inKey, i+1
	}
	return uri, uris == 1
}

// unquote removes the quotes around a value and the backslashes that escape within them.
func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' {
		return s
	}
	s = s[1 : len(s)-1]
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// validPrincipal checks a SPIFFE ID without its scheme: a trust domain of lower-case letters,
// digits, '.', '-' and '_', then a path of non-empty segments of letters, digits, '.', '-'
// and '_' that are not "." or "..". Anything else is not a certificate Istio issued.
func validPrincipal(p string) bool {
	td, path, found := strings.Cut(p, "/")
	if td == "" || !found || path == "" {
		return false
	}
	for i := 0; i < len(td); i++ {
		if c := td[i]; !spiffeByte(c) || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for i := 0; i < len(seg); i++ {
			if !spiffeByte(seg[i]) {
				return false
			}
		}
	}
	return true
}

// spiffeByte reports whether c may be in a SPIFFE path segment.
func spiffeByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '.' || c == '-' || c == '_'
}
