package workload

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/elasti-dev/elasti/api/v1alpha1"
)

// Image is the sample app's image as make images tags it; the local cluster imports it, so it
// is never pulled.
const Image = "docker.io/elasti/sampleapp:dev"

// Query is the sample app's request rate, the trigger query of its ElastiService.
const Query = "sum(rate(requests_total[1m]))"

// SampleApp is one replica of the sample app selected by labels, HTTP on port "http" (8080) and
// gRPC on "grpc" (9090), ready once /healthz answers, checked every second.
func SampleApp(namespace, name string, labels map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](2),
					Containers: []corev1.Container{{
						Name: "app", Image: Image, ImagePullPolicy: corev1.PullNever,
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "grpc", ContainerPort: 9090}},
						ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{
							HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}},
					}},
				},
			},
		},
	}
}

// ElastiService scales the Deployment name, behind the Service name, to zero after cooldown
// seconds idle and back to one replica, with the sample app's request rate from the Prometheus
// at promURL as its trigger.
func ElastiService(namespace, name, promURL string, cooldown int32) *v1alpha1.ElastiService {
	return &v1alpha1.ElastiService{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: v1alpha1.ElastiServiceSpec{
			Service:           name,
			ScaleTargetRef:    v1alpha1.ScaleTargetRef{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
			MinTargetReplicas: 1,
			CooldownPeriod:    cooldown,
			Triggers: []v1alpha1.Trigger{{Type: v1alpha1.TriggerPrometheus,
				Metadata: v1alpha1.TriggerMetadata{ServerAddress: promURL, Query: Query}}},
		},
	}
}
