package dashboard

import (
	"fmt"
	"slices"
	"strings"
)

// A small PromQL reader that finds the metric names an expression selects. It knows the
// language's keywords, strings, label matchers, ranges and Grafana's $variables; it does not
// evaluate anything. The prometheus/prometheus module, whose parser would do this, is not a
// dependency of this module and is far too heavy to add for one test.

// keywords that take a parenthesised label list which is not an expression.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// aggregations are followed by "(" or by a by/without clause, never used as metric names here.
var aggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// operators spelt as words.
var wordOperators = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdent(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// metricNames returns the metric names expr selects, in order of appearance, without repeats.
func metricNames(expr string) ([]string, error) {
	var names []string
	add := func(n string) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	s := expr
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{':
			end, name, err := readMatchers(s, i)
			if err != nil {
				return nil, err
			}
			if name != "" {
				add(name)
			}
			i = end
		case c == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed [ at %d in %q", i, expr)
			}
			i += end + 1
		case c == '$':
			i = skipVariable(s, i)
		case isDigit(c) || (c == '.' && i+1 < len(s) && isDigit(s[i+1])):
			i = skipNumber(s, i)
		case isIdentStart(c):
			start := i
			for i < len(s) && isIdent(s[i]) {
				i++
			}
			word := s[start:i]
			next := nextNonSpace(s, i)
			lower := strings.ToLower(word)
			switch {
			case labelListKeywords[lower]:
				if next < len(s) && s[next] == '(' {
					end := strings.IndexByte(s[next:], ')')
					if end < 0 {
						return nil, fmt.Errorf("unclosed label list after %s in %q", word, expr)
					}
					i = next + end + 1
				}
			case aggregations[lower], wordOperators[lower], lower == "inf", lower == "nan":
			case next < len(s) && s[next] == '(':
				// A function call.
			default:
				add(word)
			}
		case strings.IndexByte("()+-*/%^=!<>,@", c) >= 0:
			i++
		default:
			return nil, fmt.Errorf("unexpected %q at %d in %q", c, i, expr)
		}
	}
	return names, nil
}

func nextNonSpace(s string, i int) int {
	for i < len(s) && strings.IndexByte(" \t\r\n", s[i]) >= 0 {
		i++
	}
	return i
}

// skipString returns the index after the string literal that starts at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unclosed string at %d in %q", i, s)
}

// skipVariable skips a Grafana variable: $name, $__name or ${name...}.
func skipVariable(s string, i int) int {
	i++
	if i < len(s) && s[i] == '{' {
		if end := strings.IndexByte(s[i:], '}'); end >= 0 {
			return i + end + 1
		}
		return len(s)
	}
	for i < len(s) && isIdent(s[i]) {
		i++
	}
	return i
}

// skipNumber skips a number or a duration: 0.95, 1e-3, 0x1f, 5m, 1h30m.
func skipNumber(s string, i int) int {
	for i < len(s) {
		c := s[i]
		switch {
		case isDigit(c) || c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
			i++
		case (c == '-' || c == '+') && (s[i-1] == 'e' || s[i-1] == 'E') && !strings.HasPrefix(strings.ToLower(s[:i]), "0x"):
			i++
		default:
			return i
		}
	}
	return i
}

// readMatchers reads the label matchers that start at the "{" at i. It returns the index after
// the closing "}", and the metric name if a matcher says __name__="...". A regular expression on
// __name__ is an error: it names no metric that could be checked.
func readMatchers(s string, i int) (int, string, error) {
	var name string
	j := i + 1
	for {
		j = nextNonSpace(s, j)
		if j >= len(s) {
			return 0, "", fmt.Errorf("unclosed { at %d in %q", i, s)
		}
		switch {
		case s[j] == '}':
			return j + 1, name, nil
		case s[j] == ',':
			j++
		case s[j] == '"' || s[j] == '\'' || s[j] == '`' || isIdentStart(s[j]):
			// label op value, where the label may be quoted (UTF-8 names).
			var label string
			if isIdentStart(s[j]) {
				start := j
				for j < len(s) && isIdent(s[j]) {
					j++
				}
				label = s[start:j]
			} else {
				end, err := skipString(s, j)
				if err != nil {
					return 0, "", err
				}
				label, j = s[j+1:end-1], end
				if k := nextNonSpace(s, j); k < len(s) && (s[k] == ',' || s[k] == '}') {
					name = label // {"metric.name"} selects by name
					continue
				}
			}
			j = nextNonSpace(s, j)
			op := ""
			for j < len(s) && strings.IndexByte("=!~", s[j]) >= 0 {
				op += string(s[j])
				j++
			}
			if op != "=" && op != "!=" && op != "=~" && op != "!~" {
				return 0, "", fmt.Errorf("bad matcher operator %q at %d in %q", op, j, s)
			}
			j = nextNonSpace(s, j)
			if j >= len(s) || (s[j] != '"' && s[j] != '\'' && s[j] != '`') {
				return 0, "", fmt.Errorf("matcher value is not a string at %d in %q", j, s)
			}
			end, err := skipString(s, j)
			if err != nil {
				return 0, "", err
			}
			if label == "__name__" {
				if op != "=" {
					return 0, "", fmt.Errorf("__name__%s names no single metric in %q", op, s)
				}
				name = s[j+1 : end-1]
			}
			j = end
		default:
			return 0, "", fmt.Errorf("unexpected %q in label matchers at %d in %q", s[j], j, s)
		}
	}
}

// templateQuery returns the PromQL inside a Grafana Prometheus variable query, "" when it
// selects no metric (label_values(label)), or an error for a form it does not know.
func templateQuery(q string) (string, error) {
	q = strings.TrimSpace(q)
	for _, fn := range []string{"label_values(", "query_result("} {
		if !strings.HasPrefix(q, fn) || !strings.HasSuffix(q, ")") {
			continue
		}
		inner := q[len(fn) : len(q)-1]
		if fn == "query_result(" {
			return inner, nil
		}
		// label_values(expr, label) or label_values(label): split at the last top-level comma.
		depth, cut := 0, -1
		for i := 0; i < len(inner); i++ {
			switch inner[i] {
			case '(', '{', '[':
				depth++
			case ')', '}', ']':
				depth--
			case '"', '\'', '`':
				end, err := skipString(inner, i)
				if err != nil {
					return "", err
				}
				i = end - 1
			case ',':
				if depth == 0 {
					cut = i
				}
			}
		}
		if cut < 0 {
			return "", nil
		}
		return inner[:cut], nil
	}
	return "", fmt.Errorf("unknown variable query %q", q)
}
