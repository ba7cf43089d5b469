package registry

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

func TestParseHost(t *testing.T) {
	tests := map[string]struct {
		host   string
		want   HostName
		wantOK bool
	}{
		"short":              {host: "app", want: HostName{Service: "app"}, wantOK: true},
		"short with port":    {host: "app:8080", want: HostName{Service: "app", Port: 8080}, wantOK: true},
		"namespace":          {host: "app.shop", want: HostName{Service: "app", Namespace: "shop"}, wantOK: true},
		"svc":                {host: "app.shop.svc:80", want: HostName{Service: "app", Namespace: "shop", Port: 80}, wantOK: true},
		"fqdn":               {host: "app.shop.svc.cluster.local", want: HostName{Service: "app", Namespace: "shop"}, wantOK: true},
		"fqdn trailing dot":  {host: "App.Shop.svc.cluster.local.:9000", want: HostName{Service: "app", Namespace: "shop", Port: 9000}, wantOK: true},
		"other domain":       {host: "app.shop.svc.example.org", wantOK: false},
		"not svc":            {host: "app.shop.example", wantOK: false},
		"ipv4":               {host: "10.0.0.1:80", wantOK: false},
		"ipv6":               {host: "[::1]:80", wantOK: false},
		"bad port":           {host: "app:http", wantOK: false},
		"port zero":          {host: "app:0", wantOK: false},
		"port too big":       {host: "app:70000", wantOK: false},
		"empty":              {host: "", wantOK: false},
		"bad label":          {host: "-app.shop", wantOK: false},
		"service with digit": {host: "1app", wantOK: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := ParseHost(tc.host, "cluster.local")
			if ok != tc.wantOK || got != tc.want {
				t.Errorf("ParseHost(%q) = %+v, %v; want %+v, %v", tc.host, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	tests := map[string]struct {
		in             string
		wantNS, wantNm string
		wantOK         bool
	}{
		"valid":       {in: "shop/app", wantNS: "shop", wantNm: "app", wantOK: true},
		"dotted name": {in: "shop/app.v1", wantNS: "shop", wantNm: "app.v1", wantOK: true},
		"no slash":    {in: "app", wantOK: false},
		"two slashes": {in: "a/b/c", wantOK: false},
		"empty name":  {in: "shop/", wantOK: false},
		"upper":       {in: "Shop/app", wantOK: false},
		"empty":       {in: "", wantOK: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ns, nm, ok := ParseKey(tc.in)
			if ns != tc.wantNS || nm != tc.wantNm || ok != tc.wantOK {
				t.Errorf("ParseKey(%q) = %q, %q, %v; want %q, %q, %v", tc.in, ns, nm, ok, tc.wantNS, tc.wantNm, tc.wantOK)
			}
		})
	}
}

func es(ns, name, svc string) *v1alpha1.ElastiService {
	return &v1alpha1.ElastiService{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ElastiServiceSpec{Service: svc},
	}
}

type forgot []string

func (f *forgot) Forget(t *Entry) { *f = append(*f, t.Key()) }

func TestByHost(t *testing.T) {
	r := New(Options{Domain: "cluster.local", Grace: DefaultGrace})
	r.UpsertElastiService(es("shop", "app-es", "app"))
	r.UpsertElastiService(es("shop", "db-es", "db"))
	r.UpsertElastiService(es("bank", "db-es", "db"))
	r.UpsertElastiService(es("shop", "dup-1", "dup"))
	r.UpsertElastiService(es("shop", "dup-2", "dup"))
	older, newer := es("shop", "pair-b", "pair"), es("shop", "pair-a", "pair")
	older.CreationTimestamp = metav1.NewTime(time.Unix(1, 0))
	newer.CreationTimestamp = metav1.NewTime(time.Unix(2, 0))
	r.UpsertElastiService(newer)
	r.UpsertElastiService(older)
	tests := map[string]struct {
		host     string
		wantKey  string
		wantPort int32
		wantErr  error
	}{
		"unique short":      {host: "app", wantKey: "shop/app-es"},
		"unique short port": {host: "app:8080", wantKey: "shop/app-es", wantPort: 8080},
		"ambiguous short":   {host: "db", wantErr: ErrAmbiguous},
		// Two in one namespace: the one the controller serves, which claimed the Service first.
		"two in one ns, same second": {host: "dup.shop", wantKey: "shop/dup-1"},
		"two in one ns, older first": {host: "pair.shop", wantKey: "shop/pair-b"},
		"namespaced":                 {host: "db.bank", wantKey: "bank/db-es"},
		"fqdn":                       {host: "db.shop.svc.cluster.local:5432", wantKey: "shop/db-es", wantPort: 5432},
		"wrong namespace":            {host: "app.bank", wantErr: ErrUnknownHost},
		"unknown":                    {host: "web", wantErr: ErrUnknownHost},
		"external":                   {host: "example.com", wantErr: ErrUnknownHost},
		"elastiservice name":         {host: "app-es", wantErr: ErrUnknownHost},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, port, err := r.ByHost(tc.host)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ByHost(%q) error = %v, want %v", tc.host, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got.Key() != tc.wantKey || port != tc.wantPort {
				t.Errorf("ByHost(%q) = %s, %d; want %s, %d", tc.host, got.Key(), port, tc.wantKey, tc.wantPort)
			}
		})
	}
}

func TestRegistryLifecycle(t *testing.T) {
	var f forgot
	r := New(Options{Domain: "cluster.local", Forget: &f}) // no tombstone: TestTombstone covers them
	e := es("shop", "app-es", "app")
	e.Spec.Queue = &v1alpha1.QueueSettings{MaxPending: ptr.To[int32](7), HoldTimeout: &metav1.Duration{Duration: 3 * time.Second}}
	r.UpsertElastiService(e)
	r.UpsertService(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "app-elasti-private"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080}, {Name: "grpc", Port: 9090}}},
	})
	got, ok := r.ByKey("shop", "app-es")
	if !ok {
		t.Fatal("ByKey found nothing after UpsertElastiService")
	}
	if want := (types.NamespacedName{Namespace: "shop", Name: "app-elasti-private"}); got.Backend != want {
		t.Errorf("Backend = %v, want %v", got.Backend, want)
	}
	if got.MaxPending != 7 || got.HoldTimeout != 3*time.Second {
		t.Errorf("queue = %d, %v; want 7, 3s", got.MaxPending, got.HoldTimeout)
	}
	if len(got.Ports) != 2 {
		t.Errorf("Ports = %v, want the private Service's two ports", got.Ports)
	}
	r.DeleteElastiService("shop", "app-es")
	if _, ok := r.ByKey("shop", "app-es"); ok {
		t.Error("ByKey still finds a deleted ElastiService")
	}
	if _, _, err := r.ByHost("app"); !errors.Is(err, ErrUnknownHost) {
		t.Errorf("ByHost after delete: error = %v, want %v", err, ErrUnknownHost)
	}
	if len(f) != 1 || f[0] != "shop/app-es" {
		t.Errorf("forgotten = %v, want [shop/app-es]", f)
	}
}

func TestPortFor(t *testing.T) {
	two := []Port{{Name: "grpc", Port: 9090}, {Name: "http", Port: 80}}
	tests := map[string]struct {
		ports       []Port
		route, host int32
		want        Port
		refused     bool
	}{
		"route port wins":               {ports: two, route: 9090, host: 80, want: Port{Name: "grpc", Port: 9090}},
		"host port":                     {ports: two, host: 9090, want: Port{Name: "grpc", Port: 9090}},
		"port 80 among several":         {ports: two, want: Port{Name: "http", Port: 80}},
		"single port":                   {ports: []Port{{Name: "web", Port: 8080}}, want: Port{Name: "web", Port: 8080}},
		"first when no 80":              {ports: []Port{{Name: "a", Port: 81}, {Name: "b", Port: 82}}, want: Port{Name: "a", Port: 81}},
		"unknown ports default":         {want: Port{Port: 80}},
		"route port not on the Service": {ports: two, route: 6379, refused: true},
		"host port not on the Service":  {ports: two, host: 6379, refused: true},
		"route port not yet seen":       {route: 8443, refused: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tg := &Entry{Ports: tc.ports}
			if got, ok := tg.PortFor(tc.route, tc.host); got != tc.want || ok == tc.refused {
				t.Errorf("PortFor(%d, %d) = %+v, %v; want %+v, %v", tc.route, tc.host, got, ok, tc.want, !tc.refused)
			}
		})
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// forgotEntries records every entry forgotten, tombstones included.
type forgotEntries []*Entry

func (f *forgotEntries) Forget(t *Entry) { *f = append(*f, t) }

func TestTombstone(t *testing.T) {
	private := func(ns, name string, ports ...int32) *corev1.Service {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		for _, p := range ports {
			svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "p" + strconv.Itoa(int(p)), Port: p})
		}
		return svc
	}
	type lookup struct {
		host, key string // one of the two
		wantKey   string // empty: not found
		wantGone  bool
		wantPort  int32 // PortFor(0, Host port)
		wantErr   error
	}
	tests := map[string]struct {
		setup func(r *Registry, c *clock)
		grace time.Duration
		look  []lookup
	}{
		"deleted resolves as gone by host and key": {
			setup: func(r *Registry, _ *clock) {
				r.UpsertElastiService(es("shop", "app-es", "app"))
				r.UpsertService(private("shop", "app-elasti-private", 8080))
				r.DeleteElastiService("shop", "app-es")
			},
			look: []lookup{
				{host: "app.shop.svc.cluster.local", wantKey: "shop/app-es", wantGone: true, wantPort: 8080},
				{host: "app", wantKey: "shop/app-es", wantGone: true, wantPort: 8080},
				{host: "app.shop:8080", wantKey: "shop/app-es", wantGone: true, wantPort: 8080},
				{host: "app.shop:9000", wantKey: "shop/app-es", wantGone: true}, // not a port of the Service
				{key: "shop/app-es", wantKey: "shop/app-es", wantGone: true, wantPort: 8080},
				{host: "app.bank", wantErr: ErrUnknownHost},
				{key: "bank/app-es"},
			},
		},
		"ports survive the private Service deleted first": {
			setup: func(r *Registry, _ *clock) {
				r.UpsertElastiService(es("shop", "app-es", "app"))
				r.UpsertService(private("shop", "app-elasti-private", 81, 80))
				r.DeleteService("shop", "app-elasti-private")
				r.DeleteElastiService("shop", "app-es")
			},
			look: []lookup{{host: "app.shop", wantKey: "shop/app-es", wantGone: true, wantPort: 80}},
		},
		"expired": {
			setup: func(r *Registry, c *clock) {
				r.UpsertElastiService(es("shop", "app-es", "app"))
				r.DeleteElastiService("shop", "app-es")
				c.t = c.t.Add(10 * time.Minute)
			},
			look: []lookup{{host: "app.shop", wantErr: ErrUnknownHost}, {key: "shop/app-es"}},
		},
		"not yet expired": {
			setup: func(r *Registry, c *clock) {
				r.UpsertElastiService(es("shop", "app-es", "app"))
				r.DeleteElastiService("shop", "app-es")
				c.t = c.t.Add(10*time.Minute - time.Second)
			},
			look: []lookup{{host: "app.shop", wantKey: "shop/app-es", wantGone: true, wantPort: 80}},
		},
		"grace zero keeps none": {
			grace: -1,
			setup: func(r *Registry, _ *clock) {
				r.UpsertElastiService(es("shop", "app-es", "app"))
				r.DeleteElastiService("shop", "app-es")
			},
			look: []lookup{{host: "app.shop", wantErr: ErrUnknownHost}, {key: "shop/app-es"}},
		},
		"re-created wins": {
			setup: func(r *Registry, _ *clock) {
				r.UpsertElastiService(es("shop", "app-es", "app"))
				r.DeleteElastiService("shop", "app-es")
				r.UpsertElastiService(es("shop", "app-es", "app"))
			},
			look: []lookup{{host: "app.shop", wantKey: "shop/app-es", wantPort: 80}, {key: "shop/app-es", wantKey: "shop/app-es", wantPort: 80}},
		},
		// Callers of shop's app may still say "app": sending them (and their cookies) to bank's
		// app would cross tenants.
		"a short host a namespace just gave up is ambiguous, not another namespace's": {
			setup: func(r *Registry, _ *clock) {
				r.UpsertElastiService(es("shop", "app-es", "app"))
				r.UpsertElastiService(es("bank", "app-es", "app"))
				r.DeleteElastiService("shop", "app-es")
			},
			look: []lookup{
				{host: "app", wantErr: ErrAmbiguous},
				{host: "app:8080", wantErr: ErrAmbiguous},
				{host: "app.shop", wantKey: "shop/app-es", wantGone: true, wantPort: 80},
				{host: "app.bank", wantKey: "bank/app-es", wantPort: 80},
			},
		},
		"a short host claimed by a new namespace after a deletion is ambiguous": {
			setup: func(r *Registry, _ *clock) {
				r.UpsertElastiService(es("shop", "app-es", "app"))
				r.DeleteElastiService("shop", "app-es")
				r.UpsertElastiService(es("bank", "other-es", "app"))
			},
			look: []lookup{{host: "app", wantErr: ErrAmbiguous}, {host: "app.bank", wantKey: "bank/other-es", wantPort: 80}},
		},
		"the same namespace's live target wins over its own tombstone": {
			setup: func(r *Registry, _ *clock) {
				r.UpsertElastiService(es("shop", "old-es", "app"))
				r.DeleteElastiService("shop", "old-es")
				r.UpsertElastiService(es("shop", "new-es", "app"))
			},
			look: []lookup{{host: "app", wantKey: "shop/new-es", wantPort: 80}, {host: "app.shop", wantKey: "shop/new-es", wantPort: 80}},
		},
		"once the tombstone expires the other namespace has the name": {
			setup: func(r *Registry, c *clock) {
				r.UpsertElastiService(es("shop", "app-es", "app"))
				r.UpsertElastiService(es("bank", "app-es", "app"))
				r.DeleteElastiService("shop", "app-es")
				c.t = c.t.Add(DefaultGrace)
			},
			look: []lookup{{host: "app", wantKey: "bank/app-es", wantPort: 80}},
		},
		"two tombstones are ambiguous for a short host": {
			setup: func(r *Registry, _ *clock) {
				r.UpsertElastiService(es("shop", "app-es", "app"))
				r.UpsertElastiService(es("bank", "app-es", "app"))
				r.DeleteElastiService("shop", "app-es")
				r.DeleteElastiService("bank", "app-es")
			},
			look: []lookup{{host: "app", wantErr: ErrAmbiguous}, {host: "app.bank", wantKey: "bank/app-es", wantGone: true, wantPort: 80}},
		},
		"re-created for another Service, seen as an update after a relist: a tombstone for the old one": {
			setup: func(r *Registry, _ *clock) {
				r.UpsertElastiService(es("shop", "app-es", "old"))
				r.UpsertElastiService(es("shop", "app-es", "new"))
			},
			look: []lookup{
				{host: "old.shop", wantKey: "shop/app-es", wantGone: true, wantPort: 80},
				{host: "new.shop", wantKey: "shop/app-es", wantPort: 80},
				{key: "shop/app-es", wantKey: "shop/app-es", wantPort: 80},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := &clock{t: time.Unix(1e9, 0)}
			grace := DefaultGrace
			if tc.grace != 0 {
				grace = max(tc.grace, 0)
			}
			r := New(Options{Domain: "cluster.local", Grace: grace})
			r.now = c.now
			tc.setup(r, c)
			for _, l := range tc.look {
				var got *Entry
				var port int32
				var err error
				if l.host != "" {
					got, port, err = r.ByHost(l.host)
				} else {
					ns, n, _ := strings.Cut(l.key, "/")
					var ok bool
					if got, ok = r.ByKey(ns, n); !ok {
						got = nil
					}
				}
				if !errors.Is(err, l.wantErr) {
					t.Fatalf("lookup %+v: error = %v, want %v", l, err, l.wantErr)
				}
				if l.wantKey == "" {
					if got != nil {
						t.Errorf("lookup %+v found %s, want nothing", l, got.Key())
					}
					continue
				}
				if got == nil {
					t.Fatalf("lookup %+v found nothing, want %s", l, l.wantKey)
				}
				if got.Key() != l.wantKey || got.Gone != l.wantGone {
					t.Errorf("lookup %+v = %s gone=%v; want %s gone=%v", l, got.Key(), got.Gone, l.wantKey, l.wantGone)
				}
				if p, _ := got.PortFor(0, port); p.Port != l.wantPort {
					t.Errorf("lookup %+v: port %d, want %d", l, p.Port, l.wantPort)
				}
			}
		})
	}
}

// An expired tombstone is dropped at the next write and forgotten once more, so the metric
// series its requests added go too; a live target of the same key is never forgotten.
func TestTombstoneExpiryForgets(t *testing.T) {
	var f forgotEntries
	c := &clock{t: time.Unix(1e9, 0)}
	r := New(Options{Domain: "cluster.local", Forget: &f, Grace: DefaultGrace})
	r.now = c.now
	r.UpsertElastiService(es("shop", "app-es", "app"))
	r.UpsertElastiService(es("shop", "web-es", "web"))
	r.DeleteElastiService("shop", "app-es")
	r.UpsertElastiService(es("shop", "web-es", "web2")) // a tombstone for web, web-es still live
	if len(f) != 2 || f[0].Gone || f[1].Gone {
		t.Fatalf("forgotten = %v, want the two live targets", f)
	}
	if tb, ok := r.Tombstone("shop", "app-es"); !ok || !tb.Gone || tb.Service != "app" {
		t.Fatalf("Tombstone = %+v, %v; want app, gone", tb, ok)
	}
	c.t = c.t.Add(DefaultGrace)
	if _, ok := r.Tombstone("shop", "app-es"); ok {
		t.Error("Tombstone still found after the grace period")
	}
	r.DeleteService("shop", "unrelated") // any write sweeps
	if len(f) != 3 || !f[2].Gone || f[2].Key() != "shop/app-es" {
		t.Errorf("forgotten after expiry = %v, want the app-es tombstone once more (and not web-es, which is live)", f)
	}
	if len(r.tombs) != 0 {
		t.Errorf("%d tombstones left after expiry, want 0", len(r.tombs))
	}
}
