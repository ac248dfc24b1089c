// Package routes is the reconciler that keeps a Server's pod traffic
// routed on every layer: the Azure VNet route table, the Tailscale subnet
// routes of the AKS and datacenter routers, and the pod CIDR of the node in
// Kubernetes and Cilium. Azure and Tailscale are global (one table, one
// router per datacenter), so one pass reconciles all Servers at once: it
// reads each layer once, writes only the difference in as few calls as the
// layer allows, and reports per-layer conditions and status.routes on every
// Server. Watches start a pass; a periodic resync repairs drift on the
// layers that cannot be watched.
package routes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/azure"
	"github.com/stargate-k8s/stargate/pkg/cilium"
	"github.com/stargate-k8s/stargate/pkg/controller/datacenter"
	"github.com/stargate-k8s/stargate/pkg/ipam"
	"github.com/stargate-k8s/stargate/pkg/tailscale"
)

// Options are the routes reconciler's settings (flags).
type Options struct {
	EnableAzure, EnableTailscale, EnableCilium bool
	// Resync is how often a pass runs without a watch event.
	Resync time.Duration
	// StatusRefresh rewrites unchanged route status this often, so
	// lastChecked stays meaningful without a write per pass; 0 never.
	StatusRefresh time.Duration

	AzureSubscription, AzureResourceGroup, AzureRouteTable string
	// RoutePrefix marks the Azure routes Stargate owns.
	RoutePrefix string
	// AzureNextHop is the AKS router's private IP.
	AzureNextHop string
	// AzureOperationTimeout bounds a route table write with its polling;
	// AzurePollInterval is how often it is polled.
	AzureOperationTimeout, AzurePollInterval time.Duration
	// MaxRoutes is the route table's limit; NearLimit the fraction of it
	// from which the condition warns.
	MaxRoutes int
	NearLimit float64

	// AKSRouterTailnetIP finds the AKS router; AKSRoutes are what it
	// must have enabled (the AKS pod and service CIDRs).
	AKSRouterTailnetIP string
	AKSRoutes          []string
	// WorkerSubnetBits is no longer used: the worker subnet of a Server is
	// the one its Datacenter declares. Kept so old command lines start.
	WorkerSubnetBits int
}

// DefaultOptions are the flag defaults.
func DefaultOptions() Options {
	return Options{
		EnableCilium:          true,
		Resync:                5 * time.Minute,
		StatusRefresh:         30 * time.Minute,
		RoutePrefix:           "stargate-",
		MaxRoutes:             400,
		NearLimit:             0.9,
		AzureOperationTimeout: azure.DefaultOperationTimeout,
		AzurePollInterval:     5 * time.Second,
		AKSRoutes:             []string{"10.244.0.0/16", "10.0.0.0/16"},
		WorkerSubnetBits:      24,
	}
}

// Reconciler runs passes.
type Reconciler struct {
	Options
	Pool   ipam.Config
	Client client.Client
	// CiliumReader reads CiliumNodes: the manager's cache when the CRD
	// was served at start (and so is watched), else the API directly.
	CiliumReader client.Reader
	// APIReader reads Datacenters around the cache before their Tailscale
	// records change; Client when nil.
	APIReader  client.Reader
	Recorder   record.EventRecorder
	AzureTable *azure.Table
	Tailscale  *tailscale.Syncer
	Now        func() time.Time
	// CPUTime, when set, is read around each step of a pass to fill
	// PassStats.CPU (the benchmark passes the process's CPU time).
	CPUTime func() time.Duration

	// lastWanted per layer: a pass that writes although the wanted
	// state did not change since the last good pass repaired drift.
	lastWanted map[string]string
}

// PassStats says what one pass did.
type PassStats struct {
	Servers                        int
	AzureReads, AzureWrites        int
	AzureConflicts                 int
	TailscaleWrites, AdvertiseCall int
	CiliumWrites, NodeWrites       int
	StatusWrites, FinalizerWrites  int
	StatusConflicts                int
	Drift                          map[string]int
	Errors                         []error
	// Took is the wall time per step: plan, azure, tailscale, cilium,
	// status.
	Took map[string]time.Duration
	// CPU is the CPU time per step, when Reconciler.CPUTime is set.
	CPU map[string]time.Duration
}

var errStatusConflict = errors.New("status write conflict")

// layerReport is one layer's health for one Server.
type layerReport struct {
	desired, observed []string
	healthy           bool
	reason, message   string
}

type serverReport map[v1alpha1.RouteLayer]*layerReport

const (
	layerAzure     = v1alpha1.RouteLayerAzure
	layerTailscale = v1alpha1.RouteLayerTailscale
	layerCilium    = v1alpha1.RouteLayerCilium
)

var conditionOf = map[v1alpha1.RouteLayer]string{
	layerAzure:     stargate.ConditionAzureRouteSynced,
	layerTailscale: stargate.ConditionTailscaleRoutesApproved,
	layerCilium:    stargate.ConditionCiliumPodCIDRSynced,
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Reconcile runs one pass over all Servers.
func (r *Reconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	st, err := r.Pass(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	// A status write that still conflicts after its retries (someone, e.g.
	// a node agent, writes the Server's status in a tight loop) does not
	// buy a whole pass, with its cloud reads, every second: it waits like
	// a layer error. Status-only changes start no pass (serverChanged).
	if len(st.Errors) > 0 || st.StatusConflicts > 0 {
		// Layer errors are in conditions; come back sooner than a resync.
		return ctrl.Result{RequeueAfter: min(r.Resync, 30*time.Second)}, nil
	}
	return ctrl.Result{RequeueAfter: r.Resync}, nil
}

// Pass reconciles every layer for every Server once.
func (r *Reconciler) Pass(ctx context.Context) (PassStats, error) {
	log := logf.FromContext(ctx)
	start := r.now()
	st := PassStats{Drift: map[string]int{}, Took: map[string]time.Duration{}, CPU: map[string]time.Duration{}}
	step := r.now()
	var stepCPU time.Duration
	if r.CPUTime != nil {
		stepCPU = r.CPUTime()
	}
	lap := func(name string) {
		n := r.now()
		st.Took[name] += n.Sub(step)
		step = n
		if r.CPUTime != nil {
			c := r.CPUTime()
			st.CPU[name] += c - stepCPU
			stepCPU = c
		}
	}
	if r.lastWanted == nil {
		r.lastWanted = map[string]string{}
	}
	var list v1alpha1.ServerList
	if err := r.Client.List(ctx, &list); err != nil {
		return st, fmt.Errorf("list Servers: %w", err)
	}
	servers := list.Items
	st.Servers = len(servers)

	// Hold every routed Server until its routes are gone.
	for i := range servers {
		s := &servers[i]
		if s.DeletionTimestamp.IsZero() && s.Status.PodCIDR != "" && !controllerutil.ContainsFinalizer(s, stargate.FinalizerRoutes) {
			controllerutil.AddFinalizer(s, stargate.FinalizerRoutes)
			if err := r.Client.Update(ctx, s); err != nil {
				return st, fmt.Errorf("add routes finalizer to Server %s/%s: %w", s.Namespace, s.Name, err)
			}
			st.FinalizerWrites++
		}
	}

	// Only Servers of a declared datacenter, inside its network, are
	// routed; the others' layers say why (their InDatacenter condition
	// says it in full), and whatever was routed for them is withdrawn.
	dcs, err := datacenter.NewIndex(ctx, r.Client)
	if err != nil {
		return st, err
	}
	inside := map[string]*v1alpha1.Datacenter{}
	outside := map[string]metav1.Condition{}
	for i := range servers {
		s := &servers[i]
		if !s.DeletionTimestamp.IsZero() {
			continue
		}
		if dc, cond := dcs.Check(s); dc != nil {
			inside[s.Namespace+"/"+s.Name] = dc
		} else {
			outside[s.Namespace+"/"+s.Name] = cond
		}
	}
	pl := r.buildPlan(servers, r.Pool, inside)
	reports := map[string]serverReport{}
	for _, m := range pl.members {
		reports[m.key] = serverReport{}
	}
	for key, cond := range outside {
		rep := serverReport{}
		for _, layer := range []v1alpha1.RouteLayer{layerAzure, layerTailscale, layerCilium} {
			rep[layer] = &layerReport{reason: cond.Reason, message: "not routed: " + cond.Message}
		}
		reports[key] = rep
	}
	lap("plan")
	azureOK := true
	if r.EnableAzure && r.AzureTable != nil {
		azureOK = r.azurePass(ctx, pl, reports, &st)
	}
	lap("azure")
	// routerOK says whether a router's routes are known right; a Server
	// without a router has nothing on the tailnet.
	routerOK := func(ip string) bool { return true }
	tailscaleOn := r.EnableTailscale && r.Tailscale != nil
	if tailscaleOn {
		var dcList v1alpha1.DatacenterList
		if err := r.Client.List(ctx, &dcList); err != nil {
			return st, fmt.Errorf("list Datacenters: %w", err)
		}
		// Finalizers first: a Datacenter holds its records until its
		// routes are withdrawn.
		st.Errors = append(st.Errors, r.datacenterFinalizers(ctx, r.Client, true)...)
		devs := r.tailscaleDevices(pl.members, dcList.Items)
		pl.routers = r.routers(devs, dcList.Items)
		var results []tailscale.RouterResult
		routerOK, results = r.tailscalePass(ctx, pl, reports, &st)
		st.Errors = append(st.Errors, r.settleRecords(ctx, devs, results, dcList.Items)...)
	}
	// Release Datacenters being deleted whose records are empty now: read
	// around the cache, which may not have the records just written.
	var dcNow v1alpha1.DatacenterList
	if err := r.Client.List(ctx, &dcNow); err == nil && slices.ContainsFunc(dcNow.Items, func(d v1alpha1.Datacenter) bool {
		return !d.DeletionTimestamp.IsZero() && controllerutil.ContainsFinalizer(&d, stargate.FinalizerRoutes)
	}) {
		st.Errors = append(st.Errors, r.datacenterFinalizers(ctx, r.APIReader, tailscaleOn)...)
	}
	lap("tailscale")
	var ciliumNodes map[string]*unstructured.Unstructured
	ciliumErr := error(nil)
	if r.EnableCilium {
		ciliumNodes, ciliumErr = cilium.List(ctx, r.CiliumReader)
		r.ciliumPass(ctx, pl, ciliumNodes, ciliumErr, reports, &st)
	}
	lap("cilium")

	// Release deleted Servers whose routes are gone from every layer.
	for i := range servers {
		s := &servers[i]
		if s.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(s, stargate.FinalizerRoutes) {
			continue
		}
		if !azureOK || !routerOK(s.Spec.RouterIP) {
			continue
		}
		if r.EnableCilium && ciliumErr == nil {
			if err := cilium.DeleteCiliumNode(ctx, r.Client, ciliumNodes[nodeName(s)], stargate.OwnerLabels(s.Name, s.Namespace)); err != nil {
				st.Errors = append(st.Errors, err)
				continue
			}
		}
		controllerutil.RemoveFinalizer(s, stargate.FinalizerRoutes)
		if err := r.Client.Update(ctx, s); err != nil && !apierrors.IsNotFound(err) {
			st.Errors = append(st.Errors, fmt.Errorf("remove routes finalizer of Server %s/%s: %w", s.Namespace, s.Name, err))
			continue
		}
		st.FinalizerWrites++
		r.Recorder.Eventf(s, corev1.EventTypeNormal, "RoutesRemoved", "routes to %s removed from every layer", orNone(s.Status.PodCIDR))
	}

	// Status on every live Server.
	for i := range servers {
		s := &servers[i]
		if !s.DeletionTimestamp.IsZero() {
			continue
		}
		rep := reports[s.Namespace+"/"+s.Name]
		wrote, err := r.writeStatus(ctx, s, rep)
		switch {
		case errors.Is(err, errStatusConflict):
			// Someone else wrote the Server since the cache saw it; the
			// next pass, soon, writes on the fresh copy.
			st.StatusConflicts++
		case err != nil:
			st.Errors = append(st.Errors, err)
		}
		if wrote {
			st.StatusWrites++
		}
	}
	lap("status")
	passDuration.Observe(r.now().Sub(start).Seconds())
	for _, e := range st.Errors {
		log.Error(e, "route pass")
	}
	log.V(1).Info("route pass done", "servers", st.Servers, "azureWrites", st.AzureWrites, "tailscaleWrites", st.TailscaleWrites,
		"statusWrites", st.StatusWrites, "took", r.now().Sub(start))
	return st, nil
}

// noteDrift counts a write of a layer whose wanted state did not change
// since the last pass (something outside Stargate changed it) and says
// whether it was one.
func (r *Reconciler) noteDrift(layer, wantKey string, wrote bool, st *PassStats) bool {
	if wrote && r.lastWanted[layer] == wantKey {
		st.Drift[layer]++
		driftRepaired.WithLabelValues(layer).Inc()
		return true
	}
	return false
}

func (r *Reconciler) azurePass(ctx context.Context, pl plan, reports map[string]serverReport, st *PassStats) bool {
	wantKey := fmt.Sprint(pl.azure)
	res, err := r.AzureTable.Sync(ctx, pl.azure)
	st.AzureReads++
	st.AzureWrites += res.Writes
	st.AzureConflicts += res.Conflicts
	routeWrites.WithLabelValues(string(layerAzure)).Add(float64(res.Writes))
	observed := map[string]bool{}
	for _, o := range res.After.Owned {
		observed[o.String()] = true
	}
	reason, msg, healthyAll := "Synced", fmt.Sprintf("route table %s holds the route", r.AzureTable.Name), true
	switch {
	case errors.Is(err, azure.ErrRouteLimit):
		reason, msg, healthyAll = "RouteLimitExceeded", err.Error()+"; turn on datacenter blocks (-datacenter-block-size) so each datacenter needs one route", false
	case errors.Is(err, azure.ErrOperationTimeout):
		reason, msg, healthyAll = "AzureOperationTimeout", err.Error()+"; the next pass tries again", false
	case err != nil:
		reason, msg, healthyAll = "AzureError", err.Error(), false
	case r.MaxRoutes > 0 && float64(res.After.Total) >= r.NearLimit*float64(r.MaxRoutes):
		reason = "NearRouteLimit"
		msg = fmt.Sprintf("route table %s holds %d of at most %d routes; turn on datacenter blocks (-datacenter-block-size) before it fills", r.AzureTable.Name, res.After.Total, r.MaxRoutes)
	}
	drifted := false
	if err != nil {
		routeErrors.WithLabelValues(string(layerAzure)).Inc()
		st.Errors = append(st.Errors, err)
	} else {
		drifted = r.noteDrift(string(layerAzure), wantKey, res.Writes > 0, st)
		r.lastWanted[string(layerAzure)] = wantKey
	}
	before := map[string]bool{}
	for _, o := range res.Before.Owned {
		before[o.String()] = true
	}
	for _, m := range pl.members {
		want := r.azureWanted(m)
		var obs, missing []string
		for _, w := range want {
			if observed[w] {
				obs = append(obs, w)
			} else {
				missing = append(missing, w)
			}
		}
		if drifted {
			// Routes of this Server that the table lacked although
			// nothing Stargate wanted had changed: removed behind its back.
			var restored []string
			for _, w := range obs {
				if !before[w] {
					restored = append(restored, w)
				}
			}
			if len(restored) > 0 {
				r.Recorder.Eventf(m.server, corev1.EventTypeWarning, "AzureRouteRepaired", "route table %s lacked %s (changed outside Stargate); restored", r.AzureTable.Name, describe(restored))
			}
		}
		lr := &layerReport{desired: want, observed: obs, healthy: healthyAll && len(missing) == 0, reason: reason, message: msg}
		if healthyAll && len(missing) > 0 {
			lr.reason, lr.message = "RouteMissing", "missing from route table: "+describe(missing)
		}
		reports[m.key][layerAzure] = lr
	}
	return err == nil
}

func (r *Reconciler) tailscalePass(ctx context.Context, pl plan, reports map[string]serverReport, st *PassStats) (func(string) bool, []tailscale.RouterResult) {
	var wantKey string
	for _, rt := range pl.routers {
		wantKey += fmt.Sprint(rt.TailnetIP, rt.Want, rt.ManageAdvertisement)
	}
	results, err := r.Tailscale.Sync(ctx, pl.routers)
	byIP := map[string]tailscale.RouterResult{}
	ok := err == nil
	wrote := false
	for _, res := range results {
		byIP[res.TailnetIP] = res
		st.TailscaleWrites += res.EnableWrites
		st.AdvertiseCall += res.AdvertiseCalls
		routeWrites.WithLabelValues(string(layerTailscale)).Add(float64(res.EnableWrites))
		// Re-advertising counts: a router that stopped advertising
		// (changed outside Stargate) is repaired by advertising again.
		wrote = wrote || res.EnableWrites > 0 || res.AdvertiseCalls > 0
		if res.Err != nil {
			ok = false
			routeErrors.WithLabelValues(string(layerTailscale)).Inc()
			st.Errors = append(st.Errors, res.Err)
		}
	}
	if err != nil {
		routeErrors.WithLabelValues(string(layerTailscale)).Inc()
		st.Errors = append(st.Errors, err)
	}
	drifted := false
	if ok {
		drifted = r.noteDrift(string(layerTailscale), wantKey, wrote, st)
		r.lastWanted[string(layerTailscale)] = wantKey
	}
	for _, m := range pl.members {
		want := tailscaleWanted(m)
		lr := &layerReport{desired: want}
		reports[m.key][layerTailscale] = lr
		res, found := byIP[m.routerIP]
		switch {
		case m.routerIP == "":
			lr.reason, lr.message = "NoRouter", "spec.routerIP is empty: no datacenter router carries this server's routes over the tailnet"
			continue
		case err != nil:
			lr.reason, lr.message = "TailscaleError", err.Error()
			continue
		case !found:
			lr.reason, lr.message = "TailscaleError", "router not synced"
			continue
		}
		if drifted && res.Err == nil {
			restored := toSet(res.Restored)
			var mine []string
			for _, w := range want {
				if restored[w] {
					mine = append(mine, w)
				}
			}
			if len(mine) > 0 {
				r.Recorder.Eventf(m.server, corev1.EventTypeWarning, "TailscaleRouteRepaired", "router %s (%s) had %s disabled or not advertised (changed outside Stargate); restored", m.routerIP, res.DeviceName, describe(mine))
			}
		}
		enabled, advertised := toSet(res.Enabled), toSet(res.Advertised)
		var notEnabled, notAdvertised []string
		for _, w := range want {
			switch {
			case enabled[w] && advertised[w]:
				lr.observed = append(lr.observed, w)
			case !enabled[w]:
				notEnabled = append(notEnabled, w)
			default:
				notAdvertised = append(notAdvertised, w)
			}
		}
		switch {
		case errors.Is(res.Err, tailscale.ErrDeviceNotFound):
			lr.reason, lr.message = "DeviceNotFound", fmt.Sprintf("no tailnet device has router IP %s", m.routerIP)
		case len(notAdvertised) > 0:
			lr.reason, lr.message = "NotAdvertised", fmt.Sprintf("router %s (%s) does not advertise %s; enabled, but no traffic flows until it does", m.routerIP, res.DeviceName, describe(notAdvertised))
			if res.Err != nil {
				lr.message += ": " + res.Err.Error()
			}
		case res.Err != nil:
			lr.reason, lr.message = "TailscaleError", res.Err.Error()
		case len(notEnabled) > 0:
			lr.reason, lr.message = "NotEnabled", "not enabled: "+describe(notEnabled)
		default:
			lr.healthy, lr.reason, lr.message = true, "Approved", fmt.Sprintf("router %s (%s) advertises and has enabled the routes", m.routerIP, res.DeviceName)
		}
	}
	return func(ip string) bool {
		if ip == "" {
			return true
		}
		res, found := byIP[ip]
		return err == nil && (!found || res.Err == nil)
	}, results
}

func (r *Reconciler) ciliumPass(ctx context.Context, pl plan, cns map[string]*unstructured.Unstructured, listErr error, reports map[string]serverReport, st *PassStats) {
	var nodeList corev1.NodeList
	nodes := map[string]*corev1.Node{}
	nodesErr := r.Client.List(ctx, &nodeList)
	if nodesErr != nil {
		nodesErr = fmt.Errorf("list Nodes: %w", nodesErr)
	}
	for i := range nodeList.Items {
		nodes[nodeList.Items[i].Name] = &nodeList.Items[i]
	}
	for _, m := range pl.members {
		name := nodeName(m.server)
		cidr := m.podCIDR.String()
		lr := &layerReport{desired: []string{"CiliumNode " + name + " " + cidr, "Node " + name + " " + cidr}}
		reports[m.key][layerCilium] = lr
		var problems []string
		reason := ""
		// CiliumNode first: it should be there before the agent starts.
		switch {
		case errors.Is(listErr, cilium.ErrCRDMissing):
			reason = "CiliumNodeCRDMissing"
			problems = append(problems, cilium.ErrCRDMissing.Error()+": install Cilium, or run with -enable-cilium-pod-cidr=false")
		case listErr != nil:
			reason = "CiliumError"
			problems = append(problems, listErr.Error())
		default:
			have := cns[name]
			res, err := cilium.SyncCiliumNode(ctx, r.Client, name, have, cidr, stargate.OwnerLabels(m.server.Name, m.dc))
			if res.Created || res.Patched {
				st.CiliumWrites++
				routeWrites.WithLabelValues(string(layerCilium)).Inc()
				if res.Patched {
					st.Drift[string(layerCilium)]++
					driftRepaired.WithLabelValues(string(layerCilium)).Inc()
					r.Recorder.Eventf(m.server, corev1.EventTypeNormal, "CiliumPodCIDRRepaired", "CiliumNode %s spec.ipam.podCIDRs was %v, set to [%s]", name, res.Observed, cidr)
				}
			}
			if err != nil {
				reason = "CiliumError"
				switch {
				case errors.Is(err, cilium.ErrCRDMissing):
					reason = "CiliumNodeCRDMissing"
				case errors.Is(err, cilium.ErrNotOwned):
					reason = stargate.ReasonNodeNameConflict
					r.Recorder.Eventf(m.server, corev1.EventTypeWarning, stargate.ReasonNodeNameConflict, "%v", err)
				}
				routeErrors.WithLabelValues(string(layerCilium)).Inc()
				problems = append(problems, err.Error())
			} else {
				lr.observed = append(lr.observed, "CiliumNode "+name+" "+cidr)
			}
		}
		var nres cilium.NodeResult
		var err error
		if nodesErr != nil {
			err = nodesErr
		} else {
			nres, err = cilium.SyncNode(ctx, r.Client, nodes[name], cidr, stargate.OwnerLabels(m.server.Name, m.dc))
		}
		if nres.Wrote {
			st.NodeWrites++
			routeWrites.WithLabelValues(string(layerCilium)).Inc()
		}
		switch {
		case errors.Is(err, cilium.ErrNotOwned):
			if reason == "" {
				reason = stargate.ReasonNodeNameConflict
				r.Recorder.Eventf(m.server, corev1.EventTypeWarning, stargate.ReasonNodeNameConflict, "%v", err)
			}
			problems = append(problems, err.Error())
		case errors.Is(err, cilium.ErrNodeConflict):
			if reason == "" {
				reason = "NodePodCIDRConflict"
			}
			problems = append(problems, err.Error())
			r.Recorder.Eventf(m.server, corev1.EventTypeWarning, "NodePodCIDRConflict", "%v", err)
		case err != nil:
			if reason == "" {
				reason = "NodeError"
			}
			problems = append(problems, err.Error())
		case nres.State == cilium.NodeSet:
			lr.observed = append(lr.observed, "Node "+name+" "+cidr)
		}
		if len(problems) > 0 {
			lr.reason, lr.message = reason, strings.Join(problems, "; ")
			st.Errors = append(st.Errors, fmt.Errorf("server %s: %s", m.key, lr.message))
			continue
		}
		lr.healthy, lr.reason = true, "Synced"
		lr.message = fmt.Sprintf("CiliumNode %s and Node %s carry %s", name, name, cidr)
		if nres.State == cilium.NodeAbsent {
			lr.message = fmt.Sprintf("CiliumNode %s carries %s; Node %s has not registered yet and gets it when it does", name, cidr, name)
		}
	}
}

// statusWriteTries is how often a conflicting status write is tried again
// on a fresh copy of the Server, within the pass.
const statusWriteTries = 5

// writeStatus puts the layer reports into the Server's status and
// conditions, and writes only when something a reader cares about changed.
// A conflict (another writer, such as the node agent, came first) is
// retried on a fresh copy read around the cache: the reports are still
// right, so no new pass, and no cloud call, is needed.
func (r *Reconciler) writeStatus(ctx context.Context, s *v1alpha1.Server, rep serverReport) (bool, error) {
	for try := 1; ; try++ {
		wrote, err := r.writeStatusOnce(ctx, s, rep)
		if !errors.Is(err, errStatusConflict) || try >= statusWriteTries {
			return wrote, err
		}
		reader := r.APIReader
		if reader == nil {
			reader = r.Client
		}
		fresh := &v1alpha1.Server{}
		if err := reader.Get(ctx, client.ObjectKeyFromObject(s), fresh); err != nil {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, fmt.Errorf("read Server %s/%s after a status conflict: %w", s.Namespace, s.Name, err)
		}
		if !fresh.DeletionTimestamp.IsZero() || fresh.UID != s.UID {
			return false, nil
		}
		s = fresh
	}
}

func (r *Reconciler) writeStatusOnce(ctx context.Context, s *v1alpha1.Server, rep serverReport) (bool, error) {
	next := s.DeepCopy()
	now := metav1.NewTime(r.now())
	enabled := map[v1alpha1.RouteLayer]bool{layerAzure: r.EnableAzure && r.AzureTable != nil, layerTailscale: r.EnableTailscale && r.Tailscale != nil, layerCilium: r.EnableCilium}
	var notReady []string
	for _, layer := range []v1alpha1.RouteLayer{layerAzure, layerTailscale, layerCilium} {
		lr := rep[layer]
		switch {
		case !enabled[layer]:
			lr = &layerReport{healthy: true, reason: "Disabled", message: fmt.Sprintf("the %s layer is turned off in stargate-controller", layer)}
			meta.RemoveStatusCondition(&next.Status.Conditions, conditionOf[layer])
		case lr == nil:
			lr = &layerReport{reason: "PodCIDRPending", message: "the server has no pod CIDR yet; see the PodCIDRAllocated condition"}
		}
		if enabled[layer] {
			status := metav1.ConditionFalse
			if lr.healthy {
				status = metav1.ConditionTrue
			} else {
				notReady = append(notReady, fmt.Sprintf("%s: %s", layer, lr.reason))
			}
			meta.SetStatusCondition(&next.Status.Conditions, metav1.Condition{Type: conditionOf[layer], Status: status, Reason: lr.reason, Message: lr.message, ObservedGeneration: s.Generation})
		}
		setLayer(&next.Status.Routes, v1alpha1.RouteLayerStatus{
			Layer: layer, Desired: lr.desired, Observed: lr.observed, Healthy: lr.healthy, Reason: lr.reason, Message: lr.message, LastChecked: &now,
		})
	}
	ready := metav1.Condition{Type: stargate.ConditionRoutesReady, Status: metav1.ConditionTrue, Reason: "AllLayersSynced", Message: "every enabled route layer is synced", ObservedGeneration: s.Generation}
	if len(notReady) > 0 {
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "LayersNotReady", strings.Join(notReady, "; ")
	}
	meta.SetStatusCondition(&next.Status.Conditions, ready)
	// Ready reads RoutesReady: recomputed in this same write.
	v1alpha1.SetReadySummary(next)

	if sameStatus(s, next) && !r.refreshDue(s) {
		return false, nil
	}
	if err := r.Client.Status().Update(ctx, next); err != nil {
		if apierrors.IsConflict(err) {
			return false, errStatusConflict
		}
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("update status of Server %s/%s: %w", s.Namespace, s.Name, err)
	}
	r.events(s, next)
	return true, nil
}

func (r *Reconciler) refreshDue(s *v1alpha1.Server) bool {
	if r.StatusRefresh <= 0 {
		return false
	}
	for _, l := range s.Status.Routes {
		if l.Layer != v1alpha1.RouteLayerNode && (l.LastChecked == nil || r.now().Sub(l.LastChecked.Time) > r.StatusRefresh) {
			return true
		}
	}
	return false
}

// events records a change of each route condition.
func (r *Reconciler) events(old, next *v1alpha1.Server) {
	for _, t := range []string{stargate.ConditionAzureRouteSynced, stargate.ConditionTailscaleRoutesApproved, stargate.ConditionCiliumPodCIDRSynced, stargate.ConditionRoutesReady} {
		o, n := meta.FindStatusCondition(old.Status.Conditions, t), meta.FindStatusCondition(next.Status.Conditions, t)
		if n == nil || (o != nil && o.Status == n.Status && o.Reason == n.Reason) {
			continue
		}
		typ := corev1.EventTypeNormal
		if n.Status != metav1.ConditionTrue {
			typ = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(old, typ, n.Reason, "%s: %s", t, n.Message)
	}
}

func setLayer(ls *[]v1alpha1.RouteLayerStatus, l v1alpha1.RouteLayerStatus) {
	for i := range *ls {
		if (*ls)[i].Layer == l.Layer {
			(*ls)[i] = l
			return
		}
	}
	*ls = append(*ls, l)
	order := map[v1alpha1.RouteLayer]int{layerAzure: 0, layerTailscale: 1, layerCilium: 2, v1alpha1.RouteLayerNode: 3}
	sort.SliceStable(*ls, func(i, j int) bool { return order[(*ls)[i].Layer] < order[(*ls)[j].Layer] })
}

// sameStatus compares what a reader acts on: conditions without their
// times, and route layers without lastChecked.
func sameStatus(a, b *v1alpha1.Server) bool {
	if len(a.Status.Conditions) != len(b.Status.Conditions) || len(a.Status.Routes) != len(b.Status.Routes) {
		return false
	}
	for _, cb := range b.Status.Conditions {
		ca := meta.FindStatusCondition(a.Status.Conditions, cb.Type)
		if ca == nil || ca.Status != cb.Status || ca.Reason != cb.Reason || ca.Message != cb.Message || ca.ObservedGeneration != cb.ObservedGeneration {
			return false
		}
	}
	for i := range b.Status.Routes {
		la, lb := a.Status.Routes[i], b.Status.Routes[i]
		if la.Layer != lb.Layer || la.Healthy != lb.Healthy || la.Reason != lb.Reason || la.Message != lb.Message ||
			!slices.Equal(la.Desired, lb.Desired) || !slices.Equal(la.Observed, lb.Observed) {
			return false
		}
	}
	return true
}

func nodeName(s *v1alpha1.Server) string {
	if s.Status.NodeName != "" {
		return s.Status.NodeName
	}
	return s.Spec.Hostname
}

func toSet(ss []string) map[string]bool {
	m := make(map[string]bool, len(ss))
	for _, s := range ss {
		m[s] = true
	}
	return m
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
