package integration

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/stargate-k8s/stargate/test/framework"
)

func TestRestartKeepsObjectsWithEmbeddedEtcd(t *testing.T) {
	createServer(t, server("persist-embedded", "10.50.1.71"))
	uid := serverUID(t, "persist-embedded")

	ctx := testContext(t)
	if err := world.Stargate.Restart(ctx); err != nil {
		t.Fatalf("restart stargate-apiserver: %v", err)
	}
	if err := world.Stargate.WaitServed(ctx); err != nil {
		t.Fatal(err)
	}
	expectServerUID(t, "persist-embedded", uid)
}

// The same, with stargate-apiserver storing in the control plane's etcd
// (--etcd-servers) under its own prefix. For the length of the test it
// takes the place of the embedded-etcd server behind the APIService.
func TestRestartKeepsObjectsWithExternalEtcd(t *testing.T) {
	const prefix = "/stargate-it-external"
	ctx := testContext(t)
	cp := world.ControlPlane
	external, err := cp.NewStargate(framework.StargateOptions{
		Binary:      world.StargateBinary,
		Dir:         filepath.Join(t.TempDir(), "external"),
		Port:        world.Stargate.Port,
		EtcdServers: cp.EtcdURL(),
		EtcdPrefix:  prefix,
		Logf:        t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := world.Stargate.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Put the embedded-etcd server back for the other tests.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := external.Stop(); err != nil {
			t.Error(err)
		}
		if err := world.Stargate.Start(ctx); err != nil {
			t.Fatalf("restart the embedded-etcd stargate-apiserver: %v", err)
		}
		if err := world.Stargate.Register(ctx); err != nil {
			t.Fatalf("register the embedded-etcd stargate-apiserver again: %v", err)
		}
	})
	if err := external.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := external.Register(ctx); err != nil {
		t.Fatal(err)
	}

	// A different store: the embedded server's objects are not here.
	if r := kubectl(t, "get", "servers", "-n", dc, "-o", "name"); strings.Contains(r.Stdout, "worker-1") {
		t.Fatalf("the external-etcd server lists worker-1 of the embedded one:\n%s", r)
	}
	createServer(t, server("persist-external", "10.50.1.72"))
	uid := serverUID(t, "persist-external")
	if n := etcdKeys(t, cp.EtcdURL(), prefix+"/"); n == 0 {
		t.Fatalf("no keys under %s in the external etcd after creating a Server", prefix)
	}
	// Stored as protobuf (the default --storage-media-type), as
	// kube-apiserver stores built-in types.
	if v := etcdValue(t, cp.EtcdURL(), prefix+"/", "/servers/"+dc+"/persist-external"); !bytes.HasPrefix(v, []byte("k8s\x00")) {
		t.Fatalf("Server persist-external is not stored as protobuf: %q", v[:min(len(v), 60)])
	}

	if err := external.Restart(ctx); err != nil {
		t.Fatalf("restart stargate-apiserver: %v", err)
	}
	if err := external.WaitServed(ctx); err != nil {
		t.Fatal(err)
	}
	expectServerUID(t, "persist-external", uid)
}

func serverUID(t *testing.T, name string) string {
	t.Helper()
	r := kubectl(t, "get", "server", name, "-n", dc, "-o", "jsonpath={.metadata.uid}")
	if r.Stdout == "" {
		t.Fatalf("server %s has no uid:\n%s", name, r)
	}
	return r.Stdout
}

// expectServerUID checks through kubectl that the same object (not a
// recreated one) is back.
func expectServerUID(t *testing.T, name, uid string) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		r := world.Kubectl.Run(testContext(t), "get", "server", name, "-n", dc, "-o", "jsonpath={.metadata.uid}")
		if r.Err != nil {
			return fmt.Errorf("%s", r)
		}
		if r.Stdout != uid {
			return fmt.Errorf("server %s has uid %q after the restart, want %q", name, r.Stdout, uid)
		}
		return nil
	})
}

// etcdKeys counts the keys under prefix in the etcd at url.
func etcdKeys(t *testing.T, url, prefix string) int64 {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Get(testContext(t), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("read etcd at %s: %v", url, err)
	}
	return resp.Count
}

// etcdValue is the value of the one key under prefix that ends in suffix.
func etcdValue(t *testing.T, url, prefix, suffix string) []byte {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Get(testContext(t), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("read etcd at %s: %v", url, err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
		if strings.HasSuffix(string(kv.Key), suffix) {
			return kv.Value
		}
	}
	t.Fatalf("no key under %s ends in %s; keys: %v", prefix, suffix, keys)
	return nil
}
