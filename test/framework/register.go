package framework

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
)

// Register makes the kube-apiserver proxy stargate.io/v1alpha1 to this
// server: namespace stargate-system, an ExternalName Service pointing at
// localhost, and the APIService with the serving CA as caBundle. It then
// waits until the group is served through the kube-apiserver.
func (s *Stargate) Register(ctx context.Context) error {
	kube := s.cp.Kube
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: StargateNamespace}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", StargateNamespace, err)
	}

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: StargateServiceName, Namespace: StargateNamespace},
		Spec: corev1.ServiceSpec{
			Type:         corev1.ServiceTypeExternalName,
			ExternalName: "localhost",
			Ports:        []corev1.ServicePort{{Name: "https", Port: int32(s.Port)}},
		},
	}
	services := kube.CoreV1().Services(StargateNamespace)
	if old, err := services.Get(ctx, svc.Name, metav1.GetOptions{}); err == nil {
		old.Spec = svc.Spec
		if _, err := services.Update(ctx, old, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update service %s/%s: %w", StargateNamespace, svc.Name, err)
		}
	} else if _, err := services.Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create service %s/%s: %w", StargateNamespace, svc.Name, err)
	}

	agg, err := aggregator.NewForConfig(s.cp.Config)
	if err != nil {
		return err
	}
	port := int32(s.Port)
	want := &apiregistrationv1.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: StargateAPIService},
		Spec: apiregistrationv1.APIServiceSpec{
			Group:                StargateGroup,
			Version:              StargateVersion,
			Service:              &apiregistrationv1.ServiceReference{Namespace: StargateNamespace, Name: StargateServiceName, Port: &port},
			CABundle:             s.CA.CertPEM,
			GroupPriorityMinimum: 1000,
			VersionPriority:      15,
		},
	}
	apiServices := agg.ApiregistrationV1().APIServices()
	if old, err := apiServices.Get(ctx, want.Name, metav1.GetOptions{}); err == nil {
		old.Spec = want.Spec
		if _, err := apiServices.Update(ctx, old, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update APIService %s: %w", want.Name, err)
		}
	} else if _, err := apiServices.Create(ctx, want, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create APIService %s: %w", want.Name, err)
	}
	return s.WaitServed(ctx)
}

// WaitServed waits until the APIService is Available, aggregated discovery
// lists the servers resource, and listing servers through the kube-apiserver
// works several times in a row (after a restart the aggregator may still
// report the old, unreachable state for a moment).
func (s *Stargate) WaitServed(ctx context.Context) error {
	agg, err := aggregator.NewForConfig(s.cp.Config)
	if err != nil {
		return err
	}
	disco, err := discovery.NewDiscoveryClientForConfig(s.cp.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	listPath := "/apis/" + StargateGroup + "/" + StargateVersion + "/servers"
	var last string
	ok := 0
	for ok < 3 {
		last = s.servedProblem(ctx, agg, disco, listPath)
		if last == "" {
			ok++
		} else {
			ok = 0
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not served through the kube-apiserver within 2m: %s\nlast lines of %s:\n%s",
				StargateAPIService, last, s.LogFile, s.LogTail(40))
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil
}

// servedProblem says what keeps the group from being served, or "" when
// nothing does.
func (s *Stargate) servedProblem(ctx context.Context, agg aggregator.Interface, disco discovery.DiscoveryInterface, listPath string) string {
	if !s.Running() {
		return "stargate-apiserver is not running"
	}
	apiSvc, err := agg.ApiregistrationV1().APIServices().Get(ctx, StargateAPIService, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("get APIService: %v", err)
	}
	available := false
	for _, c := range apiSvc.Status.Conditions {
		if c.Type == apiregistrationv1.Available {
			if c.Status != apiregistrationv1.ConditionTrue {
				return fmt.Sprintf("APIService Available=%s: %s: %s", c.Status, c.Reason, c.Message)
			}
			available = true
		}
	}
	if !available {
		return "APIService has no Available condition yet"
	}
	_, lists, err := disco.ServerGroupsAndResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return fmt.Sprintf("discovery: %v", err)
	}
	found := slices.ContainsFunc(lists, func(l *metav1.APIResourceList) bool {
		return l.GroupVersion == StargateGroup+"/"+StargateVersion &&
			slices.ContainsFunc(l.APIResources, func(r metav1.APIResource) bool { return r.Name == "servers" })
	})
	if !found {
		return fmt.Sprintf("discovery does not list %s/%s servers yet (err: %v)", StargateGroup, StargateVersion, err)
	}
	if err := s.cp.Kube.CoreV1().RESTClient().Get().AbsPath(listPath).Param("limit", "1").Do(ctx).Error(); err != nil {
		return fmt.Sprintf("GET %s through kube-apiserver: %v", listPath, err)
	}
	return ""
}
