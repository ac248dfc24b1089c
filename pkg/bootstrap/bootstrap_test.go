package bootstrap

import (
	"archive/tar"
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

func TestScriptsPassShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck is missing; run hack/install-deps.sh")
	}
	for _, f := range []string{"scripts/ubuntu.sh", "scripts/runner.sh"} {
		out, err := exec.Command(sc, f).CombinedOutput()
		if err != nil {
			t.Errorf("shellcheck %s: %v\n%s", filepath.Base(f), err, out)
		}
	}
}

func TestTokenSecretFollowsClusterBootstrapConventions(t *testing.T) {
	tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if !bootstraputil.IsValidBootstrapToken(tok.String()) {
		t.Fatalf("invalid token format")
	}
	if err := bootstraputil.ValidateBootstrapGroupName(Group); err != nil {
		t.Fatal(err)
	}
	s := TokenSecret(tok, time.Now().Add(time.Hour), "test", nil)
	if s.Name != "bootstrap-token-"+tok.ID || s.Namespace != "kube-system" || s.Type != "bootstrap.kubernetes.io/token" {
		t.Fatalf("wrong secret identity: %s/%s %s", s.Namespace, s.Name, s.Type)
	}
	if s.StringData["usage-bootstrap-authentication"] != "true" || s.StringData["auth-extra-groups"] != Group {
		t.Fatalf("wrong usages/groups: %v", s.StringData)
	}
	if _, ok := s.StringData["usage-bootstrap-signing"]; ok {
		t.Fatal("token must not be usable for signing")
	}
	data := map[string][]byte{}
	for k, v := range s.StringData {
		data[k] = []byte(v)
	}
	back, err := TokenFromSecret(&corev1.Secret{Data: data})
	if err != nil || back != tok {
		t.Fatalf("round trip: %v %v", back.ID, err)
	}
}

func TestKubeconfigCarriesServerCAAndToken(t *testing.T) {
	tok, _ := NewToken()
	kc, err := Kubeconfig(Cluster{Server: "https://192.0.2.1:6443", CAData: []byte("CA"), TLSServerName: "localhost"}, tok)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://192.0.2.1:6443" || string(cfg.CAData) != "CA" || cfg.BearerToken != tok.String() || cfg.ServerName != "localhost" {
		t.Fatalf("wrong config: %+v", cfg)
	}
}

func TestPayloadAndEnv(t *testing.T) {
	nc := NodeConfig{NodeName: "worker-1", Server: "worker-1", Datacenter: "dc-east", KubernetesVersion: "1.33",
		Labels: map[string]string{"team": "it's"}, Taints: []string{"a=b:NoSchedule"}}
	env := string(nc.Env())
	for _, want := range []string{
		`STARGATE_NODE_LABELS='kubernetes.azure.com/managed=false,stargate.io/datacenter=dc-east,stargate.io/server=worker-1,team=it'\''s'`,
		`STARGATE_NODE_TAINTS='a=b:NoSchedule'`,
	} {
		if !strings.Contains(env, want) {
			t.Errorf("env lacks %s:\n%s", want, env)
		}
	}
	p, err := Payload([]byte("#!/bin/sh\n"), nc, []byte("kc"), []byte("ca"))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(p))
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if strings.Join(names, " ") != "bootstrap.sh runner.sh stargate.env bootstrap-kubelet.conf ca.crt" {
		t.Fatalf("payload files: %v", names)
	}
}
