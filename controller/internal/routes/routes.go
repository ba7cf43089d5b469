// Package routes rewrites Istio VirtualService HTTP routes between a target Service and the
// resolver, and restores them exactly.
//
// A VirtualService belongs to its user, so the rewrite is surgical: only HTTP destinations that
// point at the target change; each gets the target's proxy Service (whose endpoints are the
// resolver pods) as host, the same port, no subset, the same weight, and request headers that tell the resolver the target, port and subset. The
// original of each rewritten destination is recorded in an annotation under a restore key that
// the destination also carries, so a restore finds it even after the user added, removed or
// reordered routes while in Proxy mode. A restore puts back only what the rewrite changed and
// keeps whatever the user edited since, such as a weight.
//
// Host names and DestinationRules are read as istiod reads them (Normalize,
// EffectiveDestinationRule), so that elasti moves exactly the routes Istio sends to the target
// and replays them to the subset they named.
package routes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
	"github.com/elasti-dev/elasti/internal/routesig"
)

// Params say which Service's routes move and where to: the rewrite's parameters for one ElastiService.
type Params struct {
	// Key is "namespace/name" of the ElastiService.
	Key string
	// Service and Namespace of the target Service.
	Service, Namespace string
	// Domain is the cluster DNS domain, such as cluster.local.
	Domain string
	// ProxyHost is the FQDN of the target's proxy Service (names.ProxyService), where rewritten
	// destinations point: it has the target's ports and the resolver pods as endpoints.
	ProxyHost string
	// ResolverHost is the resolver Service's FQDN, where versions before the proxy Service
	// pointed rewritten destinations; such a destination is recognised and moved.
	ResolverHost string
	// Signer signs the headers for the resolver, which believes no unsigned one.
	Signer *routesig.Signer
}

// sign returns the HeaderSignature value of a destination's elasti headers.
func (p Params) sign(set map[string]string) string {
	if p.Signer == nil {
		return ""
	}
	return p.Signer.Sign(p.Key, set[v1alpha1.HeaderPort], set[v1alpha1.HeaderSubset])
}

// FQDN is the target Service's fully qualified host.
func (p Params) FQDN() string { return names.ServiceFQDN(p.Service, p.Namespace, p.Domain) }

// Normalize returns the host that a destination or DestinationRule host names, for an object in
// namespace ns, as Istio reads it (ResolveShortnameToFQDN): only a name without a dot (and not
// "*" or an IP address) is relative to the object's namespace. Anything with a dot is a literal
// host, kept byte for byte: Istio names the cluster after it verbatim, so "svc.ns", "svc.ns.svc",
// a capital letter or a trailing dot name no cluster of the Service, and elasti must not make
// such a route work in Proxy mode only.
func Normalize(host, ns, domain string) string {
	if host == "" || host == "*" || strings.Contains(host, ".") {
		return host
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return host // an IPv6 address has no dot either
	}
	return host + "." + ns + ".svc." + domain
}

// record is what the annotation keeps for one rewritten destination.
type record struct {
	ElastiService string          `json:"target"` // the key; "target" is the annotation's field name since the first release
	Destination   json.RawMessage `json:"destination"`
	Headers       json.RawMessage `json:"headers,omitempty"`
}

// RoutesTo reports whether vs has an HTTP destination that points at p's Service, in either mode.
func RoutesTo(vs *networkingv1.VirtualService, p Params) bool {
	found := false
	_ = eachDestination(&vs.Spec, func(d *apinetworking.HTTPRouteDestination) error {
		found = found || pointsAtService(d, vs.Namespace, p) || rewrittenFor(d, p)
		return nil
	})
	return found
}

// Rewrite points every HTTP destination of vs that names p's Service at the resolver and records
// the originals in vs's annotations, and signs the headers of destinations it rewrote before
// whose signature is missing or stale (a new route key). It reports whether vs changed.
func Rewrite(vs *networkingv1.VirtualService, p Params) (bool, error) {
	recs, err := readRecords(vs)
	if err != nil {
		return false, err
	}
	changed := false
	err = eachDestination(&vs.Spec, func(d *apinetworking.HTTPRouteDestination) error {
		if rewrittenFor(d, p) {
			set := d.GetHeaders().GetRequest().GetSet()
			if old, ok := set[v1alpha1.HeaderElastiServiceOld]; ok {
				// Rewritten by the previous release, under the header's old name.
				delete(set, v1alpha1.HeaderElastiServiceOld)
				set[v1alpha1.HeaderElastiService] = old
				changed = true
			}
			if sig := p.sign(set); set[v1alpha1.HeaderSignature] != sig {
				set[v1alpha1.HeaderSignature] = sig
				changed = true
			}
			if d.GetDestination().GetHost() != p.ProxyHost {
				// Rewritten by an older version, to the resolver's own Service.
				d.Destination = &apinetworking.Destination{Host: p.ProxyHost, Port: portOf(set)}
				changed = true
			}
			return nil
		}
		if !pointsAtService(d, vs.Namespace, p) {
			return nil
		}
		key, rec, err := makeRecord(d, p.Key)
		if err != nil {
			return err
		}
		recs[key] = rec
		orig := d.GetDestination()
		// The same port: the proxy Service has the target's, so a caller's Sidecar egress
		// listener for that port keeps it, and the caller speaks that port's protocol to it.
		d.Destination = &apinetworking.Destination{Host: p.ProxyHost, Port: proto.Clone(orig.GetPort()).(*apinetworking.PortSelector)}
		if orig.GetPort() == nil {
			d.Destination.Port = nil
		}
		if d.Headers == nil {
			d.Headers = &apinetworking.Headers{}
		}
		if d.Headers.Request == nil {
			d.Headers.Request = &apinetworking.Headers_HeaderOperations{}
		}
		set := map[string]string{v1alpha1.HeaderElastiService: p.Key, v1alpha1.HeaderRestoreKey: key}
		if orig.GetSubset() != "" {
			set[v1alpha1.HeaderSubset] = orig.GetSubset()
		}
		if orig.GetPort().GetNumber() != 0 {
			set[v1alpha1.HeaderPort] = strconv.FormatUint(uint64(orig.GetPort().GetNumber()), 10)
		}
		if d.Headers.Request.Set == nil {
			d.Headers.Request.Set = map[string]string{}
		}
		set[v1alpha1.HeaderSignature] = p.sign(set)
		maps.Copy(d.Headers.Request.Set, set)
		// A client's own copy of a header the route does not set would survive the set and
		// spoil the signature: the proxy removes it first.
		for _, h := range []string{v1alpha1.HeaderPort, v1alpha1.HeaderSubset} {
			if _, ok := set[h]; !ok && !slices.Contains(d.Headers.Request.Remove, h) {
				d.Headers.Request.Remove = append(d.Headers.Request.Remove, h)
			}
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, err
	}
	if changed {
		if err := writeRecords(vs, recs); err != nil {
			return false, err
		}
	}
	return changed, nil
}

// Restore points every destination that Rewrite moved for p back at the target. It reports
// whether vs changed.
func Restore(vs *networkingv1.VirtualService, p Params) (bool, error) {
	recs, err := readRecords(vs)
	if err != nil {
		return false, err
	}
	changed := false
	err = eachDestination(&vs.Spec, func(d *apinetworking.HTTPRouteDestination) error {
		if !rewrittenFor(d, p) {
			return nil
		}
		changed = true
		key := d.GetHeaders().GetRequest().GetSet()[v1alpha1.HeaderRestoreKey]
		if rec, ok := recs[key]; ok && rec.ElastiService == p.Key {
			return applyRecord(d, rec)
		}
		rebuild(d, p)
		return nil
	})
	if err != nil {
		return false, err
	}
	// Records of this target whose destinations are gone (the user deleted the route) go too.
	for key, rec := range recs {
		if rec.ElastiService == p.Key {
			delete(recs, key)
			changed = true
		}
	}
	if changed {
		if err := writeRecords(vs, recs); err != nil {
			return false, err
		}
	}
	return changed, nil
}

// eachDestination calls fn for every HTTP destination until it returns an error.
func eachDestination(spec *apinetworking.VirtualService, fn func(*apinetworking.HTTPRouteDestination) error) error {
	for _, r := range spec.GetHttp() {
		// Delegated routes live in another VirtualService; mirrors are copies, and pointing a
		// mirror at the resolver would wake the target for traffic nobody waits for.
		if r.GetDelegate() != nil {
			continue
		}
		for _, d := range r.GetRoute() {
			if d == nil {
				continue
			}
			if err := fn(d); err != nil {
				return err
			}
		}
	}
	return nil
}

func pointsAtService(d *apinetworking.HTTPRouteDestination, vsNamespace string, p Params) bool {
	host := d.GetDestination().GetHost()
	return host != "" && Normalize(host, vsNamespace, p.Domain) == p.FQDN()
}

func rewrittenFor(d *apinetworking.HTTPRouteDestination, p Params) bool {
	host := d.GetDestination().GetHost()
	return (host == p.ProxyHost || host == p.ResolverHost && p.ResolverHost != "") &&
		ElastiServiceKey(d.GetHeaders().GetRequest().GetSet()) == p.Key
}

// ElastiServiceKey is the ElastiService key that a rewritten destination's headers carry, under
// the header's name or its previous release's name; "" for a destination elasti did not rewrite.
func ElastiServiceKey(set map[string]string) string {
	if k, ok := set[v1alpha1.HeaderElastiService]; ok {
		return k
	}
	return set[v1alpha1.HeaderElastiServiceOld]
}

// portOf is the port a rewritten destination's headers record, if any.
func portOf(set map[string]string) *apinetworking.PortSelector {
	if p, err := strconv.ParseUint(set[v1alpha1.HeaderPort], 10, 32); err == nil && p > 0 {
		return &apinetworking.PortSelector{Number: uint32(p)}
	}
	return nil
}

// makeRecord captures d before the rewrite. The key hashes the target and the original
// destination without its weight, so identical destinations share one record.
func makeRecord(d *apinetworking.HTTPRouteDestination, target string) (string, record, error) {
	orig := &apinetworking.HTTPRouteDestination{Destination: d.GetDestination(), Headers: d.GetHeaders()}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(orig)
	if err != nil {
		return "", record{}, fmt.Errorf("hashing destination: %w", err)
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(target))
	_, _ = h.Write(raw)
	key := fmt.Sprintf("%016x", h.Sum64())

	rec := record{ElastiService: target}
	if rec.Destination, err = compactJSON(d.GetDestination()); err != nil {
		return "", record{}, err
	}
	if d.GetHeaders() != nil {
		if rec.Headers, err = compactJSON(d.GetHeaders()); err != nil {
			return "", record{}, err
		}
	}
	return key, rec, nil
}

func applyRecord(d *apinetworking.HTTPRouteDestination, rec record) error {
	dest := &apinetworking.Destination{}
	if err := protojson.Unmarshal(rec.Destination, dest); err != nil {
		return fmt.Errorf("reading recorded destination: %w", err)
	}
	d.Destination = dest
	d.Headers = nil
	if len(rec.Headers) > 0 {
		h := &apinetworking.Headers{}
		if err := protojson.Unmarshal(rec.Headers, h); err != nil {
			return fmt.Errorf("reading recorded headers: %w", err)
		}
		d.Headers = h
	}
	return nil
}

// rebuild restores d from its headers alone, for when the record was lost (for example, the
// annotation was removed by hand): the target's FQDN, the port and subset it had, and none of
// elasti's headers.
func rebuild(d *apinetworking.HTTPRouteDestination, p Params) {
	set := d.GetHeaders().GetRequest().GetSet()
	d.Destination = &apinetworking.Destination{Host: p.FQDN(), Subset: set[v1alpha1.HeaderSubset], Port: portOf(set)}
	for _, h := range v1alpha1.Headers() {
		delete(set, h)
	}
	if len(set) == 0 {
		d.Headers.Request.Set = nil
	}
	d.Headers.Request.Remove = slices.DeleteFunc(d.Headers.Request.Remove, func(h string) bool {
		return h == v1alpha1.HeaderPort || h == v1alpha1.HeaderSubset
	})
	if len(d.Headers.Request.Remove) == 0 {
		d.Headers.Request.Remove = nil
	}
	if proto.Equal(d.Headers.Request, &apinetworking.Headers_HeaderOperations{}) {
		d.Headers.Request = nil
	}
	if proto.Equal(d.Headers, &apinetworking.Headers{}) {
		d.Headers = nil
	}
}

// compactJSON is protojson without its deliberately unstable whitespace, so that annotations
// are byte-for-byte stable and writes happen only on real changes.
func compactJSON(m proto.Message) (json.RawMessage, error) {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("recording route: %w", err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("recording route: %w", err)
	}
	return buf.Bytes(), nil
}

func readRecords(vs *networkingv1.VirtualService) (map[string]record, error) {
	recs := map[string]record{}
	raw, ok := vs.Annotations[v1alpha1.AnnotationOriginalRoutes]
	if !ok || raw == "" {
		return recs, nil
	}
	if err := json.Unmarshal([]byte(raw), &recs); err != nil {
		return nil, fmt.Errorf("annotation %s on VirtualService %s/%s is not valid: %w",
			v1alpha1.AnnotationOriginalRoutes, vs.Namespace, vs.Name, err)
	}
	return recs, nil
}

func writeRecords(vs *networkingv1.VirtualService, recs map[string]record) error {
	if len(recs) == 0 {
		delete(vs.Annotations, v1alpha1.AnnotationOriginalRoutes)
		if len(vs.Annotations) == 0 {
			vs.Annotations = nil
		}
		return nil
	}
	raw, err := json.Marshal(recs)
	if err != nil {
		return fmt.Errorf("recording routes: %w", err)
	}
	if vs.Annotations == nil {
		vs.Annotations = map[string]string{}
	}
	vs.Annotations[v1alpha1.AnnotationOriginalRoutes] = string(raw)
	return nil
}

// Visible reports whether vs is in effect for some caller of a Service in serviceNamespace that
// is exported to serviceExportTo (the networking.istio.io/exportTo annotation, split on commas;
// empty means everywhere). Istio applies a VirtualService to a caller that both it and the
// Service are exported to, wherever the VirtualService lives: so a VirtualService in another
// namespace routes a Service exported only to its own namespace when it is exported there too.
// One exported nowhere ("~") routes nothing.
func Visible(vs *networkingv1.VirtualService, serviceNamespace string, serviceExportTo []string) bool {
	svc, svcAll := exportedTo(serviceExportTo, serviceNamespace)
	routes, routesAll := exportedTo(vs.Spec.GetExportTo(), vs.Namespace)
	switch {
	case svcAll && routesAll:
		return true
	case svcAll:
		return len(routes) > 0
	case routesAll:
		return len(svc) > 0
	}
	for ns := range svc {
		if routes[ns] {
			return true
		}
	}
	return false
}

// exportedTo reads an exportTo list of an object in namespace ns: the namespaces it names, or
// all of them (an empty list, as Istio's default, or "*").
func exportedTo(list []string, ns string) (map[string]bool, bool) {
	if len(list) == 0 {
		return nil, true
	}
	out := map[string]bool{}
	for _, e := range list {
		switch e = strings.TrimSpace(e); e {
		case "*":
			return nil, true
		case "~", "":
		case ".":
			out[ns] = true
		default:
			out[e] = true
		}
	}
	return out, false
}
