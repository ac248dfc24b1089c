package routes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate"
	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/tailscale"
)

// Tailscale route ownership is recorded in the status of the Datacenter
// the routes are for (status.tailscale), not inferred from the pod pool:
// a route is Stargate's to withdraw only when some Datacenter records it
// on that device. The Datacenter is the natural owner: it is cluster
// scoped and admin-declared (a namespace editor cannot forge a record),
// it is what a datacenter's routes exist for, and its stargate.io/routes
// finalizer keeps the record until the routes are withdrawn. The AKS
// router's routes are recorded in every live Datacenter that needs them,
// so they are withdrawn when the last Datacenter goes.

// device is what the Datacenters want of one tailnet device.
type device struct {
	ip     string
	want   map[string]bool
	byDC   map[string]map[string]bool // Datacenter name -> routes it wants here
	manage bool
}

// tailscaleDevices plans the routers: the AKS router for every live
// Datacenter, each member's router for its Datacenter, and every device
// a Datacenter (live or being deleted) holds a record of, so what is no
// longer wanted there is withdrawn.
func (o *Options) tailscaleDevices(members []member, dcs []v1alpha1.Datacenter) []*device {
	byIP := map[string]*device{}
	get := func(ip string) *device {
		d := byIP[ip]
		if d == nil {
			d = &device{ip: ip, want: map[string]bool{}, byDC: map[string]map[string]bool{}, manage: ip != o.AKSRouterTailnetIP}
			byIP[ip] = d
		}
		return d
	}
	add := func(ip, dc string, routes ...string) {
		d := get(ip)
		if d.byDC[dc] == nil {
			d.byDC[dc] = map[string]bool{}
		}
		for _, r := range routes {
			d.want[r] = true
			d.byDC[dc][r] = true
		}
	}
	for i := range dcs {
		if o.AKSRouterTailnetIP != "" && dcs[i].DeletionTimestamp.IsZero() {
			add(o.AKSRouterTailnetIP, dcs[i].Name, o.AKSRoutes...)
		}
		for _, rec := range dcs[i].Status.Tailscale {
			get(rec.TailnetIP)
		}
	}
	for _, m := range members {
		if m.routerIP != "" {
			add(m.routerIP, m.dcName, tailscaleWanted(m)...)
		}
	}
	out := make([]*device, 0, len(byIP))
	for _, d := range byIP {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].ip == o.AKSRouterTailnetIP) != (out[j].ip == o.AKSRouterTailnetIP) {
			return out[i].ip == o.AKSRouterTailnetIP
		}
		return out[i].ip < out[j].ip
	})
	return out
}

func recordOf(dc *v1alpha1.Datacenter, ip string) *v1alpha1.TailscaleRouteRecord {
	for i := range dc.Status.Tailscale {
		if dc.Status.Tailscale[i].TailnetIP == ip {
			return &dc.Status.Tailscale[i]
		}
	}
	return nil
}

// routers turns the devices into the syncer's routers, with the records
// of every Datacenter as what Stargate owns, and a Record hook that adds
// routes to the records of the Datacenters that want them before they are
// enabled or advertised.
func (r *Reconciler) routers(devs []*device, dcs []v1alpha1.Datacenter) []tailscale.Router {
	out := make([]tailscale.Router, 0, len(devs))
	for _, d := range devs {
		rt := tailscale.Router{TailnetIP: d.ip, Want: sortedKeys(d.want), ManageAdvertisement: d.manage}
		for i := range dcs {
			if rec := recordOf(&dcs[i], d.ip); rec != nil {
				rt.Owned = append(rt.Owned, tailscale.Ownership{DeviceID: rec.DeviceID, Enabled: rec.Enabled, Advertised: rec.Advertised})
			}
		}
		rt.Record = func(ctx context.Context, add tailscale.Ownership) error {
			for _, name := range sortedKeys(boolKeys(d.byDC)) {
				wanted := d.byDC[name]
				e, a := filter(add.Enabled, wanted), filter(add.Advertised, wanted)
				if len(e)+len(a) == 0 {
					continue
				}
				if err := r.updateRecord(ctx, name, d.ip, func(rec *v1alpha1.TailscaleRouteRecord) {
					if rec.DeviceID != add.DeviceID {
						// Another device had the address: its routes were not this one's.
						*rec = v1alpha1.TailscaleRouteRecord{TailnetIP: d.ip}
					}
					rec.DeviceID = add.DeviceID
					rec.Enabled = union(rec.Enabled, e)
					rec.Advertised = union(rec.Advertised, a)
				}); err != nil {
					return err
				}
			}
			return nil
		}
		out = append(out, rt)
	}
	return out
}

// settleRecords rewrites each Datacenter's records after a sync: a
// Datacenter keeps the owned routes it wants and those still owned that
// nobody wants (their withdrawal failed); withdrawn routes leave. Devices
// that were not found keep their records.
func (r *Reconciler) settleRecords(ctx context.Context, devs []*device, results []tailscale.RouterResult, dcs []v1alpha1.Datacenter) []error {
	byIP := map[string]tailscale.RouterResult{}
	for _, res := range results {
		byIP[res.TailnetIP] = res
	}
	var errs []error
	for i := range dcs {
		dc := &dcs[i]
		for _, d := range devs {
			res, ok := byIP[d.ip]
			old := recordOf(dc, d.ip)
			if ok && res.DeviceID == "" && errors.Is(res.Err, tailscale.ErrDeviceNotFound) && !dc.DeletionTimestamp.IsZero() && old != nil {
				// The device left the tailnet, and its routes with it.
				if err := r.updateRecord(ctx, dc.Name, d.ip, func(rec *v1alpha1.TailscaleRouteRecord) { *rec = v1alpha1.TailscaleRouteRecord{} }); err != nil {
					errs = append(errs, err)
				}
				continue
			}
			if !ok || res.DeviceID == "" {
				continue
			}
			wanted := d.byDC[dc.Name]
			if old == nil && len(wanted) == 0 {
				continue
			}
			keep := func(owned, had []string) []string {
				var out []string
				for _, route := range owned {
					if wanted[route] || (!d.want[route] && slices.Contains(had, route)) {
						out = append(out, route)
					}
				}
				return out
			}
			var had v1alpha1.TailscaleRouteRecord
			if old != nil {
				had = *old
			}
			if had.DeviceID != "" && had.DeviceID != res.DeviceID {
				had = v1alpha1.TailscaleRouteRecord{}
			}
			next := v1alpha1.TailscaleRouteRecord{TailnetIP: d.ip, DeviceID: res.DeviceID,
				Enabled: keep(res.Owned.Enabled, had.Enabled), Advertised: keep(res.Owned.Advertised, had.Advertised)}
			if old != nil && old.DeviceID == next.DeviceID && slices.Equal(old.Enabled, next.Enabled) && slices.Equal(old.Advertised, next.Advertised) {
				continue
			}
			if old == nil && len(next.Enabled)+len(next.Advertised) == 0 {
				continue
			}
			if err := r.updateRecord(ctx, dc.Name, d.ip, func(rec *v1alpha1.TailscaleRouteRecord) { *rec = next }); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// updateRecord changes the Datacenter's record of a device on a fresh copy
// (retrying conflicts) and drops it when it holds no route.
func (r *Reconciler) updateRecord(ctx context.Context, dcName, ip string, mutate func(*v1alpha1.TailscaleRouteRecord)) error {
	reader := r.APIReader
	if reader == nil {
		reader = r.Client
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var dc v1alpha1.Datacenter
		if err := reader.Get(ctx, types.NamespacedName{Name: dcName}, &dc); err != nil {
			return err
		}
		before := dc.DeepCopy()
		rec := recordOf(&dc, ip)
		if rec == nil {
			dc.Status.Tailscale = append(dc.Status.Tailscale, v1alpha1.TailscaleRouteRecord{TailnetIP: ip})
			rec = &dc.Status.Tailscale[len(dc.Status.Tailscale)-1]
		}
		mutate(rec)
		rec.TailnetIP = ip
		sort.Strings(rec.Enabled)
		sort.Strings(rec.Advertised)
		dc.Status.Tailscale = slices.DeleteFunc(dc.Status.Tailscale, func(t v1alpha1.TailscaleRouteRecord) bool {
			return len(t.Enabled)+len(t.Advertised) == 0
		})
		sort.Slice(dc.Status.Tailscale, func(i, j int) bool { return dc.Status.Tailscale[i].TailnetIP < dc.Status.Tailscale[j].TailnetIP })
		if fmt.Sprint(before.Status.Tailscale) == fmt.Sprint(dc.Status.Tailscale) {
			return nil
		}
		return r.Client.Status().Update(ctx, &dc)
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("record Tailscale routes of %s in Datacenter %s status.tailscale: %w", ip, dcName, err)
	}
	return nil
}

// datacenterFinalizers holds each live Datacenter with stargate.io/routes
// while Tailscale routes are kept, and releases one being deleted once it
// records no route (or when Tailscale is off: nothing can be withdrawn).
func (r *Reconciler) datacenterFinalizers(ctx context.Context, reader client.Reader, tailscaleOn bool) []error {
	var list v1alpha1.DatacenterList
	if reader == nil {
		reader = r.Client
	}
	if err := reader.List(ctx, &list); err != nil {
		return []error{fmt.Errorf("list Datacenters: %w", err)}
	}
	var errs []error
	for i := range list.Items {
		dc := &list.Items[i]
		has := controllerutil.ContainsFinalizer(dc, stargate.FinalizerRoutes)
		switch {
		case dc.DeletionTimestamp.IsZero() && tailscaleOn && !has:
			controllerutil.AddFinalizer(dc, stargate.FinalizerRoutes)
		case !dc.DeletionTimestamp.IsZero() && has && (!tailscaleOn || len(dc.Status.Tailscale) == 0):
			controllerutil.RemoveFinalizer(dc, stargate.FinalizerRoutes)
		default:
			continue
		}
		if err := r.Client.Update(ctx, dc); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("update finalizers of Datacenter %s: %w", dc.Name, err))
		}
	}
	return errs
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func boolKeys[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func filter(ss []string, keep map[string]bool) []string {
	var out []string
	for _, s := range ss {
		if keep[s] {
			out = append(out, s)
		}
	}
	return out
}

func union(a, b []string) []string {
	m := map[string]bool{}
	for _, s := range a {
		m[s] = true
	}
	for _, s := range b {
		m[s] = true
	}
	return sortedKeys(m)
}
