package framework

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// WorldOptions configure StartWorld.
type WorldOptions struct {
	// Dir holds certificates, kubeconfigs, logs and data. When empty a
	// temporary directory is made, and Stop removes it.
	Dir string
	// BinDir holds kube-apiserver, etcd and kubectl; the repo's bin/ when empty.
	BinDir string
	// PersistEtcd keeps the kube-apiserver's etcd data in Dir across starts.
	PersistEtcd bool
	// APIServerBindAddress and ServiceClusterIPRange: see
	// ControlPlaneOptions.BindAddress and ServiceClusterIPRange.
	APIServerBindAddress  string
	ServiceClusterIPRange string
	// StargateBinary is the stargate-apiserver to run; when empty
	// ./cmd/apiserver is built into BinDir.
	StargateBinary string
	// Stargate tweaks the stargate-apiserver; Binary and Dir are filled in.
	// Leaving EtcdServers empty runs it on embedded etcd.
	Stargate StargateOptions
	// WithoutControllerManager runs no kube-controller-manager, for
	// benchmarks that measure the API servers alone. Otherwise it runs as
	// in a real cluster (see StartControllerManager), configured by
	// ControllerManager.
	WithoutControllerManager bool
	ControllerManager        ControllerManagerOptions
	// Logf reports progress; nil is quiet.
	Logf func(format string, args ...any)
}

// World is a kube-apiserver with stargate-apiserver registered behind it,
// and kubectl to drive them.
type World struct {
	Dir            string
	RepoRoot       string
	Binaries       Binaries
	StargateBinary string
	ControlPlane   *ControlPlane
	Stargate       *Stargate
	// ControllerManager is nil with WorldOptions.WithoutControllerManager.
	ControllerManager *ControllerManager
	// Kubectl runs as the control plane's admin (system:masters).
	Kubectl Kubectl
	// KeepDir keeps a temporary Dir when Stop runs, e.g. to read the logs
	// of a failed test run.
	KeepDir bool

	removeDir bool
}

// StartWorld builds what is missing of stargate-apiserver, starts etcd,
// kube-apiserver and stargate-apiserver, registers the APIService and
// starts kube-controller-manager.
// On error everything started so far is stopped again.
func StartWorld(ctx context.Context, opts WorldOptions) (_ *World, err error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	w := &World{}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.Stop())
		}
	}()
	if w.RepoRoot, err = RepoRoot(); err != nil {
		return nil, err
	}
	if opts.BinDir == "" {
		opts.BinDir = filepath.Join(w.RepoRoot, "bin")
	}
	if w.Binaries, err = FindBinaries(opts.BinDir); err != nil {
		return nil, err
	}
	w.StargateBinary = opts.StargateBinary
	if w.StargateBinary == "" {
		logf("building stargate-apiserver from ./cmd/apiserver")
		if w.StargateBinary, err = BuildStargate(ctx, w.RepoRoot, opts.BinDir); err != nil {
			return nil, err
		}
	}

	w.Dir = opts.Dir
	if w.Dir == "" {
		if w.Dir, err = os.MkdirTemp("", "stargate-world-"); err != nil {
			return nil, err
		}
		w.removeDir = true
	} else if err := os.MkdirAll(w.Dir, 0o755); err != nil {
		return nil, err
	}

	w.ControlPlane, err = StartControlPlane(ControlPlaneOptions{
		Dir:                   filepath.Join(w.Dir, "kube"),
		Binaries:              w.Binaries,
		PersistEtcd:           opts.PersistEtcd,
		BindAddress:           opts.APIServerBindAddress,
		ServiceClusterIPRange: opts.ServiceClusterIPRange,
		// A real cluster admits Pods only with an existing ServiceAccount;
		// kube-controller-manager makes the default ones.
		ServiceAccountAdmission: !opts.WithoutControllerManager,
		Logf:                    logf,
	})
	if err != nil {
		return nil, err
	}
	w.Kubectl = w.KubectlFor(w.ControlPlane.AdminKubeconfig)

	sopts := opts.Stargate
	sopts.Binary = w.StargateBinary
	if sopts.Dir == "" {
		sopts.Dir = filepath.Join(w.Dir, "stargate")
	}
	if sopts.Logf == nil {
		sopts.Logf = logf
	}
	if w.Stargate, err = w.ControlPlane.NewStargate(sopts); err != nil {
		return nil, err
	}
	if err := w.Stargate.Start(ctx); err != nil {
		return nil, err
	}
	logf("registering APIService %s", StargateAPIService)
	if err := w.Stargate.Register(ctx); err != nil {
		return nil, err
	}
	logf("%s is served through the kube-apiserver", StargateAPIService)
	// After the APIService, so the garbage collector's and the namespace
	// controller's first discovery already sees stargate.io.
	if !opts.WithoutControllerManager {
		logf("starting kube-controller-manager")
		if w.ControllerManager, err = w.ControlPlane.StartControllerManager(ctx, opts.ControllerManager); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// KubectlFor runs kubectl with the given kubeconfig and the world's cache dir.
func (w *World) KubectlFor(kubeconfig string) Kubectl {
	return Kubectl{Path: w.Binaries.Kubectl, Kubeconfig: kubeconfig, CacheDir: filepath.Join(w.Dir, "kubectl-cache")}
}

// Stop stops kube-controller-manager, stargate-apiserver, kube-apiserver
// and etcd, and removes a temporary Dir.
func (w *World) Stop() error {
	var errs []error
	if err := w.ControllerManager.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("stop kube-controller-manager: %w", err))
	}
	if w.Stargate != nil {
		if err := w.Stargate.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop stargate-apiserver: %w", err))
		}
	}
	if w.ControlPlane != nil {
		if err := w.ControlPlane.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop control plane: %w", err))
		}
	}
	if w.removeDir && !w.KeepDir && w.Dir != "" {
		if err := os.RemoveAll(w.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
