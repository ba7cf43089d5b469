//go:build envtest

package reconciler_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/proto"
	apisecurity "istio.io/api/security/v1beta1"
	apitype "istio.io/api/type/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/elasti-dev/elasti/api/v1alpha1"
	"github.com/elasti-dev/elasti/internal/names"
)

// policy creates an AuthorizationPolicy in ns for the fixture's pods (app=target).
func policy(ns, name string, spec *apisecurity.AuthorizationPolicy) *securityv1.AuthorizationPolicy {
	GinkgoHelper()
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: objMeta(name, ns)}
	proto.Merge(&ap.Spec, spec)
	Expect(k8s.Create(testCtx, ap)).To(Succeed())
	DeferCleanup(func() { _ = k8s.Delete(testCtx, ap) })
	return ap
}

func fromPrincipals(p ...string) []*apisecurity.Rule {
	return []*apisecurity.Rule{{From: []*apisecurity.Rule_From{{Source: &apisecurity.Source{Principals: p}}}}}
}

var targetPods = &apitype.WorkloadSelector{MatchLabels: map[string]string{"app": "target"}}

// resolverPolicy returns elasti's policy for f's target, or nil once there is none.
func resolverPolicy(g Gomega, f *fixture) *securityv1.AuthorizationPolicy {
	ap := &securityv1.AuthorizationPolicy{}
	err := k8s.Get(testCtx, client.ObjectKey{Namespace: f.ns, Name: names.ResolverAuthorizationPolicy("target")}, ap)
	if apierrors.IsNotFound(err) {
		return nil
	}
	g.Expect(err).NotTo(HaveOccurred())
	return ap
}

var _ = Describe("AuthorizationPolicies on the target's pods", func() {
	BeforeEach(resetFakes)
	AfterEach(resetFakes)

	It("lists the policies that apply, lets replays through ALLOW policies with the resolver's principal only, and goes to zero", func() {
		f := newFixture(1)
		policy(f.ns, "frontend-only", &apisecurity.AuthorizationPolicy{Selector: targetPods, Rules: fromPrincipals("cluster.local/ns/frontend/sa/frontend")})
		// Another workload's policy is not the target's.
		policy(f.ns, "other-app", &apisecurity.AuthorizationPolicy{
			Selector: &apitype.WorkloadSelector{MatchLabels: map[string]string{"app": "other"}}, Rules: fromPrincipals("x")})

		Eventually(func(g Gomega) {
			g.Expect(f.status().AuthorizationPolicies).To(Equal([]string{f.ns + "/frontend-only"}))
			ap := resolverPolicy(g, f)
			g.Expect(ap).NotTo(BeNil())
			g.Expect(ap.Spec.GetAction()).To(Equal(apisecurity.AuthorizationPolicy_ALLOW))
			g.Expect(ap.Spec.GetSelector().GetMatchLabels()).To(Equal(map[string]string{"app": "target"}))
			g.Expect(ap.Spec.GetRules()).To(HaveLen(1))
			g.Expect(ap.Spec.GetRules()[0].GetTo()).To(BeEmpty())
			g.Expect(ap.Spec.GetRules()[0].GetWhen()).To(BeEmpty())
			g.Expect(ap.Spec.GetRules()[0].GetFrom()).To(HaveLen(1))
			g.Expect(ap.Spec.GetRules()[0].GetFrom()[0].GetSource().GetPrincipals()).To(Equal([]string{resolverPrincipal}))
			g.Expect(ap.Labels).To(HaveKeyWithValue(v1alpha1.LabelComponent, v1alpha1.ComponentAuthorization))
			g.Expect(metav1.GetControllerOf(ap)).NotTo(BeNil())
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())
		toZero(f)

		By("removing elasti's policy once no ALLOW policy is left, since on its own it would deny every other caller")
		Expect(k8s.Delete(testCtx, &securityv1.AuthorizationPolicy{ObjectMeta: objMeta("frontend-only", f.ns)})).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(f.status().AuthorizationPolicies).To(BeEmpty())
			g.Expect(resolverPolicy(g, f)).To(BeNil())
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())
	})

	It("writes no policy of its own for DENY policies alone, and enforces those of the root namespace too", func() {
		Expect(client.IgnoreAlreadyExists(k8s.Create(testCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}}))).To(Succeed())
		f := newFixture(1)
		policy(f.ns, "no-admin", &apisecurity.AuthorizationPolicy{Selector: targetPods, Action: apisecurity.AuthorizationPolicy_DENY,
			Rules: []*apisecurity.Rule{{To: []*apisecurity.Rule_To{{Operation: &apisecurity.Operation{Paths: []string{"/admin*"}}}}}}})
		root := policy("istio-system", "mesh-deny-"+f.ns, &apisecurity.AuthorizationPolicy{Action: apisecurity.AuthorizationPolicy_DENY,
			Rules: []*apisecurity.Rule{{From: []*apisecurity.Rule_From{{Source: &apisecurity.Source{Namespaces: []string{"untrusted"}}}}}}})
		Eventually(func(g Gomega) {
			g.Expect(f.status().AuthorizationPolicies).To(Equal([]string{"istio-system/" + root.Name, f.ns + "/no-admin"}))
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())
		toZero(f)
		Eventually(func(g Gomega) { g.Expect(resolverPolicy(g, f)).To(BeNil()) }).WithTimeout(wait).WithPolling(tick).Should(Succeed())
	})

	It("decides a selector that asks for more than the Service's selector by the pod template", func() {
		f := newFixture(1)
		// The Deployment's pods are app=target only: this policy is another version's.
		policy(f.ns, "v9-only", &apisecurity.AuthorizationPolicy{
			Selector: &apitype.WorkloadSelector{MatchLabels: map[string]string{"app": "target", "version": "v9"}},
			Rules:    fromPrincipals("cluster.local/ns/frontend/sa/frontend")})
		toZero(f)
		Expect(f.status().AuthorizationPolicies).To(BeEmpty())
		Eventually(func(g Gomega) { g.Expect(resolverPolicy(g, f)).To(BeNil()) }).WithTimeout(wait).WithPolling(tick).Should(Succeed())
	})

	// In Serve, at full size: never held by a resolver that could not enforce the policy.
	keptAwake := func(f *fixture, msg string) {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			c, st := readyOf(g, f.es)
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonUnsupportedAuthorization))
			g.Expect(c.Message).To(Equal(msg))
			g.Expect(st.Mode).To(Equal(v1alpha1.ModeServe))
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())
		// Idle for three cooldowns: any other Service would be at zero by now.
		Consistently(func(g Gomega) {
			g.Expect(f.replicas()).To(Equal(int32(1)))
			g.Expect(f.status().Mode).To(Equal(v1alpha1.ModeServe))
			g.Expect(resolverPolicy(g, f)).To(BeNil())
		}).WithTimeout(3 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	}

	It("keeps the target awake when a policy asks what the resolver cannot check, and names the field", func() {
		f := newFixture(1)
		policy(f.ns, "jwt", &apisecurity.AuthorizationPolicy{Selector: targetPods, Rules: []*apisecurity.Rule{{
			From: []*apisecurity.Rule_From{{Source: &apisecurity.Source{RequestPrincipals: []string{"*"}}}}}}})
		keptAwake(f, "AuthorizationPolicy "+f.ns+"/jwt applies to the target's pods, and the resolver cannot check "+
			"rules[0].from[0].source.requestPrincipals for the callers it holds; the target is kept awake")
	})

	It("keeps the target awake when a DENY policy would refuse the resolver's own replays", func() {
		f := newFixture(1)
		policy(f.ns, "frontend-or-nothing", &apisecurity.AuthorizationPolicy{Selector: targetPods, Action: apisecurity.AuthorizationPolicy_DENY,
			Rules: []*apisecurity.Rule{{From: []*apisecurity.Rule_From{{Source: &apisecurity.Source{
				NotPrincipals: []string{"cluster.local/ns/frontend/sa/frontend"}}}}}}})
		keptAwake(f, "DENY AuthorizationPolicy "+f.ns+"/frontend-or-nothing would deny the resolver's replays, which carry its identity "+
			resolverPrincipal+"; the target is kept awake")
	})

	It("wakes a target at zero once a policy it cannot enforce appears", func() {
		f := newFixture(1)
		toZero(f)
		policy(f.ns, "custom", &apisecurity.AuthorizationPolicy{Selector: targetPods, Action: apisecurity.AuthorizationPolicy_CUSTOM,
			ActionDetail: &apisecurity.AuthorizationPolicy_Provider{Provider: &apisecurity.AuthorizationPolicy_ExtensionProvider{Name: "ext"}},
			Rules:        []*apisecurity.Rule{{}}})
		Eventually(f.replicas).WithTimeout(wait).WithPolling(tick).Should(Equal(int32(2)))
		Eventually(func(g Gomega) {
			c, _ := readyOf(g, f.es)
			g.Expect(c.Reason).To(Equal(v1alpha1.ReasonUnsupportedAuthorization))
		}).WithTimeout(wait).WithPolling(tick).Should(Succeed())
	})

	It("deletes its policy with the ElastiService", func() {
		// Made when Proxy mode is first wanted.
		f := newFixture(1)
		policy(f.ns, "frontend-only", &apisecurity.AuthorizationPolicy{Selector: targetPods, Rules: fromPrincipals("cluster.local/ns/frontend/sa/frontend")})
		Eventually(func(g Gomega) { g.Expect(resolverPolicy(g, f)).NotTo(BeNil()) }).WithTimeout(wait).WithPolling(tick).Should(Succeed())
		Expect(k8s.Delete(testCtx, f.es)).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(resolverPolicy(g, f)).To(BeNil()) }).WithTimeout(wait).WithPolling(tick).Should(Succeed())
	})
})
