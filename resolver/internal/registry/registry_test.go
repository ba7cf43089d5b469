package registry

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/elasti-dev/elasti/controller/api/v1alpha1"
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

func TestParseTarget(t *testing.T) {
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
			ns, nm, ok := ParseTarget(tc.in)
			if ns != tc.wantNS || nm != tc.wantNm || ok != tc.wantOK {
				t.Errorf("ParseTarget(%q) = %q, %q, %v; want %q, %q, %v", tc.in, ns, nm, ok, tc.wantNS, tc.wantNm, tc.wantOK)
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

func (f *forgot) Forget(t *Target) { *f = append(*f, t.Key()) }

func TestByHost(t *testing.T) {
	r := New("cluster.local", nil)
	r.UpsertElastiService(es("shop", "app-es", "app"))
	r.UpsertElastiService(es("shop", "db-es", "db"))
	r.UpsertElastiService(es("bank", "db-es", "db"))
	tests := map[string]struct {
		host     string
		wantKey  string
		wantPort int32
		wantErr  error
	}{
		"unique short":       {host: "app", wantKey: "shop/app-es"},
		"unique short port":  {host: "app:8080", wantKey: "shop/app-es", wantPort: 8080},
		"ambiguous short":    {host: "db", wantErr: ErrAmbiguous},
		"namespaced":         {host: "db.bank", wantKey: "bank/db-es"},
		"fqdn":               {host: "db.shop.svc.cluster.local:5432", wantKey: "shop/db-es", wantPort: 5432},
		"wrong namespace":    {host: "app.bank", wantErr: ErrUnknownHost},
		"unknown":            {host: "web", wantErr: ErrUnknownHost},
		"external":           {host: "example.com", wantErr: ErrUnknownHost},
		"elastiservice name": {host: "app-es", wantErr: ErrUnknownHost},
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
	r := New("cluster.local", &f)
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
	}{
		"route port wins":         {ports: two, route: 9090, host: 80, want: Port{Name: "grpc", Port: 9090}},
		"host port":               {ports: two, host: 9090, want: Port{Name: "grpc", Port: 9090}},
		"port 80 among several":   {ports: two, want: Port{Name: "http", Port: 80}},
		"single port":             {ports: []Port{{Name: "web", Port: 8080}}, want: Port{Name: "web", Port: 8080}},
		"first when no 80":        {ports: []Port{{Name: "a", Port: 81}, {Name: "b", Port: 82}}, want: Port{Name: "a", Port: 81}},
		"unknown ports default":   {want: Port{Port: 80}},
		"route port not yet seen": {route: 8443, want: Port{Port: 8443}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tg := &Target{Ports: tc.ports}
			if got := tg.PortFor(tc.route, tc.host); got != tc.want {
				t.Errorf("PortFor(%d, %d) = %+v, want %+v", tc.route, tc.host, got, tc.want)
			}
		})
	}
}
