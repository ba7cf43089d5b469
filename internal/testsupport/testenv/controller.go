package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/manifest"
	"github.com/elasti-dev/elasti/internal/testsupport/repo"
)

// ControllerServiceAccount is the controller's ServiceAccount in the chart and config/.
const ControllerServiceAccount = "elasti-controller"

// ControllerUser is the user name the controller's pods authenticate as when elasti is
// installed in namespace.
func ControllerUser(namespace string) string {
	return "system:serviceaccount:" + namespace + ":" + ControllerServiceAccount
}

// AsController returns a copy of cfg that acts as the controller's ServiceAccount in namespace:
// the user name and groups a token of that ServiceAccount authenticates as. envtest's admin
// may impersonate anyone.
func AsController(cfg *rest.Config, namespace string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{
		UserName: ControllerUser(namespace),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	return c
}

// InstallController gives the controller's ServiceAccount in namespace (which must exist) what
// an installation gives it: the roles controller-gen generated (config/rbac/controller), bound
// to it, and the chart's ValidatingAdmissionPolicy and binding (charts/elasti/admission). It
// returns once the API server enforces both, so that requests made AsController meet what they
// would meet on a cluster.
func InstallController(ctx context.Context, cfg *rest.Config, namespace string) error {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return err
	}
	roles, err := decodeFile(repo.Path("config", "rbac", "controller", "role.yaml"), nil)
	if err != nil {
		return err
	}
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: ControllerServiceAccount, Namespace: namespace}
	for _, role := range roles {
		var binding client.Object
		meta := metav1.ObjectMeta{Name: role.GetName()}
		ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: role.GetKind(), Name: role.GetName()}
		if role.GetKind() == "Role" {
			// controller-gen writes elasti-system; the chart and config/ put it in theirs.
			role.SetNamespace(namespace)
			meta.Namespace = namespace
			binding = &rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: []rbacv1.Subject{subject}}
		} else {
			binding = &rbacv1.ClusterRoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: []rbacv1.Subject{subject}}
		}
		if err := createAll(ctx, c, role, binding); err != nil {
			return err
		}
	}
	policy, err := decodeFile(repo.Path("charts", "elasti", "admission", "controller-policy.yaml"),
		map[string]any{"Release": map[string]any{"Namespace": namespace}})
	if err != nil {
		return err
	}
	for _, o := range policy {
		if err := createAll(ctx, c, o); err != nil {
			return err
		}
	}
	return waitEnforced(ctx, cfg, namespace)
}

// decodeFile reads the objects of a manifest, executed as a Go template with data when data is
// not nil.
func decodeFile(path string, data any) ([]*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if data != nil {
		t, err := template.New(filepath.Base(path)).Option("missingkey=error").Parse(string(raw))
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return nil, err
		}
		raw = b.Bytes()
	}
	objs, err := manifest.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return objs, nil
}

func createAll(ctx context.Context, c client.Client, objs ...client.Object) error {
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// waitEnforced waits until, as the controller, a dry-run create of an unlabelled Service is
// denied by the policy and one of a labelled Service is allowed: RBAC and the policy have
// reached the API server's caches.
func waitEnforced(ctx context.Context, cfg *rest.Config, namespace string) error {
	c, err := client.New(AsController(cfg, namespace), client.Options{})
	if err != nil {
		return err
	}
	probe := func(labels map[string]string) error {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "policy-probe", Namespace: namespace, Labels: labels},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
		}
		return c.Create(ctx, svc, client.DryRunAll)
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		denied := probe(nil)
		if !apierrors.IsForbidden(denied) || !strings.Contains(denied.Error(), "ValidatingAdmissionPolicy 'elasti-controller'") {
			last = fmt.Errorf("unlabelled Service: %w", denied)
			return false, nil
		}
		last = probe(map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue})
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("the controller's RBAC and admission policy are not enforced: %w (last: %w)", err, last)
	}
	return nil
}
