package twin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/stargate-k8s/stargate/test/dcsim"
	"github.com/stargate-k8s/stargate/test/netns"
	"github.com/stargate-k8s/stargate/test/tailnet"
)

const (
	echoPort   = 7000
	proberPort = 8080
)

// Node is a simulated node's namespace: a DC worker's (made by dcsim) or
// the AKS node's. Its pods hang off the bridge cbr0, which has the first
// address of the pod CIDR.
type Node struct {
	Name string
	// Site is "aks" or the datacenter's name.
	Site  string
	NetNS string
	IP    netip.Addr
	// PodCIDR is where its pods' addresses come from (Stargate's IPAM for
	// a DC worker): what the pods have, whatever the API says later.
	PodCIDR netip.Prefix
	Pods    []*Pod
}

// Pod is a pod namespace with an echo server (TCP echoPort) and a prober
// (HTTP proberPort) serving Goldpinger's /check and /check_all.
type Pod struct {
	Name  string
	Node  *Node
	NetNS string
	IP    netip.Addr

	world *Pods
	ls    []net.Listener
	srv   *http.Server
}

// Pods are all pods of the twin; every prober checks every other pod.
type Pods struct {
	// ProbeTimeout bounds each ICMP and TCP probe.
	ProbeTimeout time.Duration

	mu   sync.Mutex
	pods []*Pod
	ns   []string
	link map[string]bool // nodes whose bridge exists
}

// All lists the pods by name.
func (p *Pods) All() []*Pod {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := append([]*Pod(nil), p.pods...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// AddPods gives node n count pods (namespaces <prefix>-<node>-p<k>)
// addressed from its pod CIDR, each with its echo server and prober.
func (p *Pods) AddPods(prefix string, n *Node, count int) error {
	p.mu.Lock()
	if p.link == nil {
		p.link = map[string]bool{}
	}
	first := !p.link[n.NetNS]
	p.link[n.NetNS] = true
	p.mu.Unlock()
	bits := n.PodCIDR.Bits()
	if first {
		if err := ipSteps(
			[]string{n.NetNS, "link", "add", "cbr0", "type", "bridge"},
			[]string{n.NetNS, "addr", "add", fmt.Sprintf("%s/%d", dcsim.SubnetAddr(n.PodCIDR, 1), bits), "dev", "cbr0"},
			[]string{n.NetNS, "link", "set", "cbr0", "up"},
		); err != nil {
			return err
		}
		if err := sysctlIn(n.NetNS, "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
			"net.ipv4.conf.all.accept_redirects=0", "net.ipv4.conf.all.send_redirects=0"); err != nil {
			return err
		}
	}
	have := len(n.Pods)
	for k := have + 1; k <= have+count; k++ {
		pod := &Pod{Name: fmt.Sprintf("%s-p%d", n.Name, k), Node: n, NetNS: fmt.Sprintf("%s-%s-p%d", prefix, n.Name, k), IP: dcsim.SubnetAddr(n.PodCIDR, 9+k), world: p}
		if err := netns.Add(pod.NetNS); err != nil {
			return err
		}
		p.mu.Lock()
		p.ns = append(p.ns, pod.NetNS)
		p.mu.Unlock()
		port := fmt.Sprintf("pod%d", k)
		if err := ipSteps(
			[]string{n.NetNS, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", pod.NetNS},
			[]string{n.NetNS, "link", "set", port, "master", "cbr0", "up"},
			[]string{pod.NetNS, "addr", "add", fmt.Sprintf("%s/%d", pod.IP, bits), "dev", "eth0"},
			[]string{pod.NetNS, "link", "set", "eth0", "up"},
			[]string{pod.NetNS, "route", "add", "default", "via", dcsim.SubnetAddr(n.PodCIDR, 1).String()},
		); err != nil {
			return err
		}
		if err := pod.serve(); err != nil {
			return err
		}
		n.Pods = append(n.Pods, pod)
		p.mu.Lock()
		p.pods = append(p.pods, pod)
		p.mu.Unlock()
	}
	return nil
}

func (pod *Pod) serve() error {
	echo, err := netns.Listen(pod.NetNS, "tcp4", net.JoinHostPort(pod.IP.String(), fmt.Sprint(echoPort)))
	if err != nil {
		return err
	}
	go tailnet.EchoServer(echo)
	web, err := netns.Listen(pod.NetNS, "tcp4", net.JoinHostPort(pod.IP.String(), fmt.Sprint(proberPort)))
	if err != nil {
		echo.Close()
		return err
	}
	pod.ls = []net.Listener{echo, web}
	mux := http.NewServeMux()
	mux.HandleFunc("/check", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, pod.Check())
	})
	mux.HandleFunc("/check_all", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, pod.checkAllOverPodNetwork(r.Context()))
	})
	pod.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = pod.srv.Serve(web) }()
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Check probes every other pod from this one, ICMP and TCP at once, as
// Goldpinger's /check does over HTTP.
func (pod *Pod) Check() CheckResults {
	timeout := pod.world.ProbeTimeout
	if timeout <= 0 {
		timeout = 500 * time.Millisecond
	}
	res := CheckResults{PodResults: map[string]PodResult{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, o := range pod.world.All() {
		if o == pod {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			var icmpErr, tcpErr error
			icmpDone := make(chan struct{})
			// A probe that fails is tried once more: a path a drift
			// broke fails both times, while one reply lost to a loaded
			// machine would otherwise count as a broken pair.
			go func() {
				if icmpErr = tailnet.Ping(pod.NetNS, o.IP, timeout); icmpErr != nil {
					icmpErr = tailnet.Ping(pod.NetNS, o.IP, timeout)
				}
				close(icmpDone)
			}()
			addr := net.JoinHostPort(o.IP.String(), fmt.Sprint(echoPort))
			if tcpErr = tailnet.TCPEcho(pod.NetNS, addr, timeout); tcpErr != nil {
				tcpErr = tailnet.TCPEcho(pod.NetNS, addr, timeout)
			}
			<-icmpDone
			pr := PodResult{HostIP: o.Node.IP.String(), PodIP: o.IP.String(), OK: icmpErr == nil && tcpErr == nil,
				ResponseTimeMs: time.Since(start).Milliseconds(), ICMP: icmpErr == nil, TCP: tcpErr == nil, StatusCode: 200}
			if err := errors.Join(icmpErr, tcpErr); err != nil {
				pr.Error, pr.StatusCode = err.Error(), 504
			}
			mu.Lock()
			res.PodResults[o.Name] = pr
			mu.Unlock()
		}()
	}
	wg.Wait()
	return res
}

// checkAllOverPodNetwork is Goldpinger's /check_all as a pod serves it:
// it asks every pod's prober for its /check over the pod network, so an
// unreachable pod shows as a failed response.
func (pod *Pod) checkAllOverPodNetwork(ctx context.Context) CheckAllResults {
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netns.Dial(ctx, pod.NetNS, "tcp4", addr)
		},
	}}
	return collect(ctx, pod.world.All(), cl)
}

// CheckAll is the matrix as the test sees it: every pod's /check, fetched
// from inside that pod's own namespace (no cross-pod hop), in Goldpinger's
// check_all shape.
func (p *Pods) CheckAll(ctx context.Context) CheckAllResults {
	pods := p.All()
	byIP := map[string]*Pod{}
	for _, pod := range pods {
		byIP[pod.IP.String()] = pod
	}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			pod := byIP[host]
			if pod == nil {
				return nil, fmt.Errorf("no pod has %s", host)
			}
			return netns.Dial(ctx, pod.NetNS, "tcp4", addr)
		},
	}}
	return collect(ctx, pods, cl)
}

func collect(ctx context.Context, pods []*Pod, cl *http.Client) CheckAllResults {
	out := CheckAllResults{Responses: map[string]CheckAllPodResult{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, pod := range pods {
		out.Hosts = append(out.Hosts, HostInfo{HostIP: pod.Node.IP.String(), PodIP: pod.IP.String(), PodName: pod.Name})
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := CheckAllPodResult{HostIP: pod.Node.IP.String(), PodIP: pod.IP.String()}
			var cr CheckResults
			err := getJSON(ctx, cl, "http://"+net.JoinHostPort(pod.IP.String(), fmt.Sprint(proberPort))+"/check", &cr)
			if err != nil {
				r.Error = err.Error()
			} else {
				r.OK, r.Response = true, &cr
			}
			mu.Lock()
			out.Responses[pod.Name] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func getJSON(ctx context.Context, cl *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Close stops the probers and deletes the pod namespaces.
func (p *Pods) Close() error {
	p.mu.Lock()
	pods, nss := p.pods, p.ns
	p.pods, p.ns = nil, nil
	p.mu.Unlock()
	for _, pod := range pods {
		if pod.srv != nil {
			_ = pod.srv.Close()
		}
		for _, l := range pod.ls {
			l.Close()
		}
	}
	var errs []error
	for _, ns := range nss {
		errs = append(errs, netns.Delete(ns))
	}
	return errors.Join(errs...)
}
