package routes

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/azure"
	"github.com/stargate-k8s/stargate/pkg/azure/azurefake"
	"github.com/stargate-k8s/stargate/pkg/controller/manager"
	"github.com/stargate-k8s/stargate/pkg/controller/routes"
	"github.com/stargate-k8s/stargate/pkg/tailscale"
	"github.com/stargate-k8s/stargate/pkg/tailscale/tailscalefake"
)

const (
	aksRouterIP    = "10.224.0.4"
	aksTailnetIP   = "100.64.0.1"
	foreignAzure   = "corp-default-route"
	foreignTSRoute = "192.168.77.0/24"
)

// recordingAdvertiser stands in for `tailscale set --advertise-routes` over
// SSH to the DC router: it records every call and plays the router by
// updating what the fake API says the device advertises.
type recordingAdvertiser struct {
	mu    sync.Mutex
	calls []string
	ts    *tailscalefake.Server
}

func (a *recordingAdvertiser) Advertise(_ context.Context, ip string, routes []string) error {
	a.mu.Lock()
	a.calls = append(a.calls, ip+" "+strings.Join(routes, ","))
	a.mu.Unlock()
	return a.ts.SetAdvertisedByIP(ip, routes)
}

// env is one running controller with its fakes.
type env struct {
	azure *azurefake.Table
	ts    *tailscalefake.Server
	adv   *recordingAdvertiser
	ctrl  *routes.Controller
	stop  func()
}

func dcRouterIP(dc int) string { return fmt.Sprintf("100.64.1.%d", dc+1) }

// startController starts the fakes and a manager running the routes group
// (ipam + routes) against the test world.
func startController(t *testing.T, dcs int, mutate func(*routes.Controller)) *env {
	t.Helper()
	e := &env{azure: azurefake.New("rg-aks", "aks-agentpool-rt")}
	e.azure.Set(foreignAzure, "0.0.0.0/0", "10.224.0.9")
	opts := azure.ClientOptions(e.azure.Transport())
	opts.Retry.RetryDelay = 50 * time.Millisecond
	rtc, err := armnetwork.NewRouteTablesClient("sub-test", &azfake.TokenCredential{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.ts = tailscalefake.New("", "oauth-client", "oauth-secret")
	t.Cleanup(e.ts.Close)
	e.ts.AddDevice(tailscalefake.Device{NodeID: "nAKS", Name: "aks-router.tail.ts.net", Addresses: []string{aksTailnetIP},
		Advertised: []string{"10.0.0.0/16", "10.244.0.0/16"}})
	for i := range dcs {
		d := tailscalefake.Device{NodeID: fmt.Sprintf("nDC%d", i), Name: fmt.Sprintf("dc-%d-router.tail.ts.net", i), Addresses: []string{dcRouterIP(i)}}
		if i == 0 {
			d.Advertised, d.Enabled = []string{foreignTSRoute}, []string{foreignTSRoute}
		}
		e.ts.AddDevice(d)
	}
	e.adv = &recordingAdvertiser{ts: e.ts}
	tsc, err := tailscale.NewClient(tailscale.Credentials{ClientID: "oauth-client", ClientSecret: "oauth-secret", BaseURL: e.ts.URL})
	if err != nil {
		t.Fatal(err)
	}

	c := routes.New()
	c.EnableAzure, c.EnableTailscale, c.EnableCilium = true, true, true
	c.Resync = 3 * time.Second
	c.AzureNextHop = aksRouterIP
	c.AKSRouterTailnetIP = aksTailnetIP
	c.AzureTable = &azure.Table{Client: rtc, ResourceGroup: "rg-aks", Name: "aks-agentpool-rt", Prefix: c.RoutePrefix, MaxRoutes: c.MaxRoutes, PollFrequency: 10 * time.Millisecond}
	c.Tailscale = &tailscale.Syncer{Client: tsc}
	c.Advertiser = e.adv
	if mutate != nil {
		mutate(c)
	}
	e.ctrl = c

	ctrl.SetLogger(textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(0))))
	_ = klog.Background
	skip, grace := true, 5*time.Second
	mgr, err := ctrl.NewManager(world.ControlPlane.Config, ctrl.Options{
		Scheme:                  manager.Scheme,
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		Controller:              config.Controller{SkipNameValidation: &skip},
		GracefulShutdownTimeout: &grace,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.SetupWithManager(ctx, mgr); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	e.stop = func() { once.Do(func() { stopManager(t, cancel, done) }) }
	t.Cleanup(e.stop)
	return e
}

func stopManager(t *testing.T, cancel context.CancelFunc, done chan error) {
	{
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Logf("manager stopped: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("manager did not stop")
		}
	}
}

// createDatacenter creates namespace name and the Datacenter that declares
// it, with its worker subnet, its router's tailnet address and the
// router's address in the subnet (gateway): the controller routes only
// Servers of declared datacenters.
func createDatacenter(t *testing.T, ctx context.Context, name, subnet, routerIP, gateway string) {
	t.Helper()
	_, err := world.ControlPlane.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.StargateV1alpha1().Datacenters().Create(ctx, &v1alpha1.Datacenter{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.DatacenterSpec{Namespace: name, WorkerSubnet: subnet, Router: v1alpha1.DatacenterRouter{IP: routerIP}, AgentGateway: gateway},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// createTestDatacenter is createDatacenter for the Servers newServer makes
// with dcIndex: worker subnet 10.50.<dcIndex+1>.0/24, router dcRouterIP.
func createTestDatacenter(t *testing.T, ctx context.Context, name string, dcIndex int) {
	t.Helper()
	createDatacenter(t, ctx, name, fmt.Sprintf("10.50.%d.0/24", dcIndex+1), dcRouterIP(dcIndex), fmt.Sprintf("10.50.%d.1", dcIndex+1))
}

func newServer(dc string, dcIndex, i int) *v1alpha1.Server {
	name := fmt.Sprintf("%s-w%02d", dc, i)
	return &v1alpha1.Server{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: dc},
		Spec: v1alpha1.ServerSpec{
			Hostname:               name,
			IPAddress:              fmt.Sprintf("10.50.%d.%d", dcIndex+1, 10+i),
			RouterIP:               dcRouterIP(dcIndex),
			ProvisioningProfileRef: &v1alpha1.LocalObjectReference{Name: "default"},
		},
	}
}

func condition(s *v1alpha1.Server, t string) *metav1.Condition {
	for i := range s.Status.Conditions {
		if s.Status.Conditions[i].Type == t {
			return &s.Status.Conditions[i]
		}
	}
	return nil
}

// waitServers polls the Servers of the namespaces until ok holds for all.
func waitServers(t *testing.T, ctx context.Context, timeout time.Duration, namespaces []string, ok func(*v1alpha1.Server) bool) []v1alpha1.Server {
	t.Helper()
	var last []v1alpha1.Server
	var bad string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last = last[:0]
		for _, ns := range namespaces {
			l, err := client.StargateV1alpha1().Servers(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			last = append(last, l.Items...)
		}
		for i := range last {
			if !ok(&last[i]) {
				bad = fmt.Sprintf("%s/%s: podCIDR=%q conditions=%+v", last[i].Namespace, last[i].Name, last[i].Status.PodCIDR, last[i].Status.Conditions)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("waiting for servers: %v; first not ready: %s", err, bad)
	}
	return last
}

func routesReady(s *v1alpha1.Server) bool {
	c := condition(s, "RoutesReady")
	return c != nil && c.Status == metav1.ConditionTrue
}
