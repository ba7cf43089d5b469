package podprobe

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func TestTranslateNotProbeable(t *testing.T) {
	http8080 := httpProbe(intstr.FromInt32(8080), "/ready")
	tests := map[string]struct {
		pod           *corev1.Pod
		wantContainer string
		wantReason    string
	}{
		"exec readiness": {
			pod:           newPod(corev1.Container{Name: "app", ReadinessProbe: execProbe()}),
			wantContainer: "app", wantReason: "exec probe",
		},
		"exec startup next to an HTTP readiness": {
			pod:           newPod(corev1.Container{Name: "app", StartupProbe: execProbe(), ReadinessProbe: http8080}),
			wantContainer: "app", wantReason: "exec probe",
		},
		"exec in a second container": {
			pod: newPod(corev1.Container{Name: "app", ReadinessProbe: http8080},
				corev1.Container{Name: "worker", ReadinessProbe: execProbe()}),
			wantContainer: "worker", wantReason: "exec probe",
		},
		"no probe": {
			pod:        newPod(corev1.Container{Name: "app"}, corev1.Container{Name: "worker"}),
			wantReason: "no startup or readiness probe",
		},
		"only a liveness probe": {
			pod:        newPod(corev1.Container{Name: "app", LivenessProbe: http8080}),
			wantReason: "no startup or readiness probe",
		},
		"readiness gates": {
			pod: func() *corev1.Pod {
				p := newPod(corev1.Container{Name: "app", ReadinessProbe: http8080})
				p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}}
				return p
			}(),
			wantReason: "readiness gates",
		},
		"HTTP probe host": {
			pod: newPod(corev1.Container{Name: "app", ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Host: "localhost", Port: intstr.FromInt32(8080)}}}}),
			wantContainer: "app", wantReason: `probe host "localhost"`,
		},
		"TCP probe host": {
			pod: newPod(corev1.Container{Name: "app", ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				TCPSocket: &corev1.TCPSocketAction{Host: "db.example", Port: intstr.FromInt32(5432)}}}}),
			wantContainer: "app", wantReason: `probe host "db.example"`,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Translate(tt.pod)
			if !errors.Is(err, ErrNotProbeable) {
				t.Fatalf("err = %v, want ErrNotProbeable", err)
			}
			var np *NotProbeableError
			if !errors.As(err, &np) {
				t.Fatalf("err = %T, want *NotProbeableError", err)
			}
			if np.Container != tt.wantContainer || np.Reason != tt.wantReason {
				t.Errorf("got container %q reason %q, want %q %q", np.Container, np.Reason, tt.wantContainer, tt.wantReason)
			}
		})
	}
}

func TestTranslateErrors(t *testing.T) {
	tests := map[string]struct {
		pod      *corev1.Pod
		wantIn   []string
		wantNoIP bool
	}{
		"unknown named port": {
			pod: newPod(corev1.Container{Name: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: httpProbe(intstr.FromString("metrics"), "/")}),
			wantIn: []string{`container "app"`, `"metrics"`},
		},
		"named port of another container": {
			pod: newPod(corev1.Container{Name: "app", ReadinessProbe: tcpProbe(intstr.FromString("db"))},
				corev1.Container{Name: "db", Ports: []corev1.ContainerPort{{Name: "db", ContainerPort: 5432}}}),
			wantIn: []string{`container "app"`, `"db"`},
		},
		"port zero": {
			pod:    newPod(corev1.Container{Name: "app", ReadinessProbe: tcpProbe(intstr.FromInt32(0))}),
			wantIn: []string{`container "app"`, "out of range"},
		},
		"gRPC port out of range": {
			pod:    newPod(corev1.Container{Name: "app", ReadinessProbe: grpcProbe(70000, nil)}),
			wantIn: []string{`container "app"`, "70000"},
		},
		"no handler": {
			pod:    newPod(corev1.Container{Name: "app", ReadinessProbe: &corev1.Probe{}}),
			wantIn: []string{`container "app"`, "no handler"},
		},
		"unknown scheme": {
			pod: newPod(corev1.Container{Name: "app", ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(8080), Scheme: "FTP"}}}}),
			wantIn: []string{`container "app"`, "FTP"},
		},
		"no pod IP": {
			pod: func() *corev1.Pod {
				p := newPod(corev1.Container{Name: "app", ReadinessProbe: tcpProbe(intstr.FromInt32(8080))})
				p.Status.PodIP = ""
				return p
			}(),
			wantNoIP: true,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Translate(tt.pod)
			if err == nil {
				t.Fatal("Translate succeeded")
			}
			if errors.Is(err, ErrNotProbeable) {
				t.Errorf("err = %v matches ErrNotProbeable; it is a broken spec or a pod not yet placed", err)
			}
			if got := errors.Is(err, ErrNoPodIP); got != tt.wantNoIP {
				t.Errorf("errors.Is(%v, ErrNoPodIP) = %v, want %v", err, got, tt.wantNoIP)
			}
			for _, w := range tt.wantIn {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err %q does not name %s", err, w)
				}
			}
		})
	}
}

func TestTranslateChecks(t *testing.T) {
	pod := newPod(corev1.Container{
		Name:  "app",
		Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 9090}, {Name: "http", ContainerPort: 8080}},
		ReadinessProbe: &corev1.Probe{TimeoutSeconds: 3, ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Port: intstr.FromString("http"), Path: "/ready", Scheme: corev1.URISchemeHTTPS}}},
		StartupProbe:  tcpProbe(intstr.FromString("http")),
		LivenessProbe: execProbe(), // not ours: liveness restarts, it does not gate traffic
	}, corev1.Container{
		Name:           "worker",
		ReadinessProbe: grpcProbe(9091, ptr.To("jobs")),
	})
	pod.Spec.InitContainers = []corev1.Container{
		{Name: "migrate", StartupProbe: execProbe()}, // not a sidecar: skipped (the API gives it no probes anyway)
		{Name: "proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways), ReadinessProbe: tcpProbe(intstr.FromInt32(15021))},
	}

	p := mustTranslate(t, pod)
	want := "app startup tcp 127.0.0.1:8080; " +
		"proxy readiness tcp 127.0.0.1:15021; " +
		"app readiness GET https://127.0.0.1:8080/ready; " +
		"worker readiness grpc 127.0.0.1:9091 service jobs"
	if got := p.String(); got != want {
		t.Errorf("checks:\n got %s\nwant %s", got, want)
	}
	wantTimeouts := []time.Duration{time.Second, time.Second, 3 * time.Second, time.Second}
	for i, c := range p.checks {
		if c.timeout != wantTimeouts[i] {
			t.Errorf("check %d (%s %s) timeout %s, want %s", i, c.container, c.kind, c.timeout, wantTimeouts[i])
		}
	}
}

func TestTranslateIPv6(t *testing.T) {
	pod := newPod(corev1.Container{Name: "app", ReadinessProbe: httpProbe(intstr.FromInt32(8080), "/ready")})
	pod.Status.PodIP = "fd00::1"
	if got, want := mustTranslate(t, pod).String(), "app readiness GET http://[fd00::1]:8080/ready"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
