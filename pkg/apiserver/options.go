package apiserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/policy/mutating"
	"k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	serverstorage "k8s.io/apiserver/pkg/server/storage"
	"k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	cliflag "k8s.io/component-base/cli/flag"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	baseversion "k8s.io/component-base/version"
	"k8s.io/klog/v2"
	netutils "k8s.io/utils/net"

	"github.com/stargate-k8s/stargate/pkg/apis/stargate/v1alpha1"
	"github.com/stargate-k8s/stargate/pkg/apiserver/admission/agentrestriction"
	"github.com/stargate-k8s/stargate/pkg/apiserver/admission/datacenternetwork"
	"github.com/stargate-k8s/stargate/pkg/apiserver/admission/initializer"
	"github.com/stargate-k8s/stargate/pkg/generated/clientset/versioned"
	informers "github.com/stargate-k8s/stargate/pkg/generated/informers/externalversions"
	generatedopenapi "github.com/stargate-k8s/stargate/pkg/generated/openapi"
)

// etcdPathPrefix is where stargate.io objects live in etcd.
const etcdPathPrefix = "/registry/stargate.io"

// Options are the flags of stargate-apiserver.
type Options struct {
	RecommendedOptions *genericoptions.RecommendedOptions
	// ServerRun are the request limits, timeouts and graceful-shutdown
	// flags every k8s.io/apiserver server has (--shutdown-delay-duration,
	// --request-timeout, ...).
	ServerRun *genericoptions.ServerRunOptions
	Logs      *logs.Options

	// DataDir holds the embedded etcd when no --etcd-servers are named.
	DataDir string
	// AlternateDNS are extra names for the self-signed serving certificate.
	AlternateDNS []string
	// NodeAgent names the ServiceAccounts the NodeAgentRestriction
	// admission plugin restricts.
	NodeAgent *agentrestriction.Options
	// Networks are the cluster's networks the DatacenterNetwork admission
	// plugin keeps datacenters out of.
	Networks *datacenternetwork.Options
	// ServingCert, when its Secret is named, makes and shares the serving
	// certificate and puts its CA into the APIService (servingcert.go).
	ServingCert *ServingCertOptions

	components basecompatibility.ComponentGlobalsRegistry
	stdout     io.Writer
	// informers are made for the admission plugins when the admission
	// chain is built, and started once the server runs.
	informers informers.SharedInformerFactory
}

// NewOptions returns the default options.
func NewOptions(stdout io.Writer) *Options {
	o := &Options{
		RecommendedOptions: genericoptions.NewRecommendedOptions(etcdPathPrefix,
			Codecs.LegacyCodec(v1alpha1.SchemeGroupVersion)),
		Logs:        logs.NewOptions(),
		DataDir:     "/var/lib/stargate-apiserver",
		NodeAgent:   agentrestriction.NewOptions(),
		Networks:    datacenternetwork.NewOptions(),
		ServingCert: NewServingCertOptions(),
		components:  compatibility.DefaultComponentGlobalsRegistry,
		stdout:      stdout,
	}
	o.ServerRun = genericoptions.NewServerRunOptionsForComponent(basecompatibility.DefaultKubeComponent, o.components)
	// On SIGTERM, answer new requests with 429 Retry-After, let requests in
	// flight finish, then end long-running ones (the watches that
	// kube-apiserver's garbage collector, namespace and quota controllers
	// hold through the aggregator) with a GOAWAY within 2s, so their
	// clients reconnect at once. Without it the server waits up to
	// --request-timeout (60s) for those watches before it exits.
	o.ServerRun.ShutdownSendRetryAfter = true
	o.RecommendedOptions.Etcd.StorageConfig.EncodeVersioner = runtime.NewMultiGroupVersioner(
		v1alpha1.SchemeGroupVersion, schema.GroupKind{Group: v1alpha1.GroupName})
	// Store protobuf, as kube-apiserver does for built-in types: smaller in
	// etcd and cheaper to decode on every read. Config builds the storage
	// codec from --storage-media-type (the generic options only keep the
	// flag); objects stored in another media type are still read.
	o.RecommendedOptions.Etcd.DefaultStorageMediaType = runtime.ContentTypeProtobuf
	// MutatingAdmissionPolicy waits for admissionregistration.k8s.io/v1
	// mutating policies, which clusters before Kubernetes 1.36 (AKS among
	// them) do not serve: every write would then be refused as "not yet
	// ready". It stays available through --enable-admission-plugins.
	o.RecommendedOptions.Admission.DefaultOffPlugins.Insert(mutating.PluginName)
	agentrestriction.Register(o.RecommendedOptions.Admission.Plugins, o.NodeAgent)
	datacenternetwork.Register(o.RecommendedOptions.Admission.Plugins, o.Networks)
	o.RecommendedOptions.Admission.RecommendedPluginOrder = append(o.RecommendedOptions.Admission.RecommendedPluginOrder,
		agentrestriction.PluginName, datacenternetwork.PluginName)
	// The generic initializers give plugins informers on the
	// kube-apiserver's objects; DatacenterNetwork reads this server's own
	// Datacenters, through its loopback client, as sample-apiserver does.
	o.RecommendedOptions.ExtraAdmissionInitializers = func(c *genericapiserver.RecommendedConfig) ([]admission.PluginInitializer, error) {
		client, err := versioned.NewForConfig(c.LoopbackClientConfig)
		if err != nil {
			return nil, fmt.Errorf("loopback client for admission: %w", err)
		}
		o.informers = informers.NewSharedInformerFactory(client, 0)
		return []admission.PluginInitializer{initializer.New(o.informers)}, nil
	}
	return o
}

// NewCommand returns the stargate-apiserver command.
func NewCommand(ctx context.Context, o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stargate-apiserver",
		Short: "Aggregated API server for stargate.io: Datacenters, Servers, ProvisioningProfiles and Operations",
		Long: `stargate-apiserver serves the stargate.io/v1alpha1 API behind the cluster's
kube-apiserver (registered by an APIService). It stores its objects in etcd:
an embedded etcd under --data-dir when --etcd-servers is empty, else the
external etcd cluster named there. Authentication and authorization are
delegated to the kube-apiserver.`,
		SilenceUsage: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.components.Set()
		},
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("stargate-apiserver takes no arguments, got %q", args)
			}
			if err := logsapi.ValidateAndApply(o.Logs, nil); err != nil {
				return err
			}
			return o.Run(c.Context())
		},
	}
	cmd.SetContext(ctx)

	fss := cliflag.NamedFlagSets{}
	o.RecommendedOptions.AddFlags(fss.FlagSet("generic"))
	logsapi.AddFlags(o.Logs, fss.FlagSet("logs"))
	stargate := fss.FlagSet("stargate")
	stargate.StringVar(&o.DataDir, "data-dir", o.DataDir,
		"Directory of the embedded etcd, used when --etcd-servers is empty. One process is then all a single machine needs; name --etcd-servers for HA.")
	stargate.StringSliceVar(&o.AlternateDNS, "alternate-dns", o.AlternateDNS,
		"Extra DNS names for the self-signed serving certificate made when no --tls-cert-file is given.")
	stargate.StringSliceVar(&o.NodeAgent.ServiceAccounts, "node-agent-service-accounts", o.NodeAgent.ServiceAccounts,
		"ServiceAccounts (namespace:name) of stargate-nodeagent. The NodeAgentRestriction admission plugin lets them write only the node-layer status of the Server of the node their bound token names.")
	o.Networks.AddFlags(stargate)
	o.ServingCert.AddFlags(stargate)

	_, _ = o.components.ComponentGlobalsOrRegister(basecompatibility.DefaultKubeComponent,
		basecompatibility.NewEffectiveVersionFromString(baseversion.DefaultKubeBinaryVersion, "", ""),
		utilfeature.DefaultMutableFeatureGate)
	// Also the components' --emulated-version and --feature-gates.
	o.ServerRun.AddUniversalFlags(fss.FlagSet("generic"))

	for _, fs := range fss.FlagSets {
		cmd.Flags().AddFlagSet(fs)
	}
	cols, _, _ := termSize(cmd)
	cliflag.SetUsageAndHelpFunc(cmd, fss, cols)
	return cmd
}

// Run starts the embedded etcd when needed, then serves until ctx ends.
func (o *Options) Run(ctx context.Context) error {
	if len(o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList) == 0 {
		etcd, err := StartEmbeddedEtcd(ctx, filepath.Clean(o.DataDir))
		if err != nil {
			return err
		}
		defer etcd.Close()
		o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList = []string{etcd.ClientURL}
		klog.InfoS("Started embedded etcd", "dataDir", o.DataDir, "url", etcd.ClientURL)
	}
	if err := o.Validate(); err != nil {
		return err
	}
	if err := o.ServingCert.Start(ctx, o.RecommendedOptions.CoreAPI.CoreAPIKubeconfigPath, o.RecommendedOptions.SecureServing, o.AlternateDNS); err != nil {
		return err
	}
	config, err := o.Config()
	if err != nil {
		return err
	}
	server, err := config.Complete().New()
	if err != nil {
		return err
	}
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}

// Validate checks the options.
func (o *Options) Validate() error {
	var errs []error
	errs = append(errs, o.RecommendedOptions.Validate()...)
	errs = append(errs, o.ServerRun.Validate()...)
	errs = append(errs, o.components.Validate()...)
	errs = append(errs, o.NodeAgent.Validate()...)
	errs = append(errs, o.Networks.Validate()...)
	errs = append(errs, o.ServingCert.Validate(o.RecommendedOptions.SecureServing)...)
	return utilerrors.NewAggregate(errs)
}

// Config builds the server configuration from the options.
func (o *Options) Config() (*Config, error) {
	if err := o.RecommendedOptions.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", o.AlternateDNS,
		[]net.IP{netutils.ParseIPSloppy("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("create self-signed serving certificate: %w", err)
	}

	c := genericapiserver.NewRecommendedConfig(Codecs)
	namer := openapi.NewDefinitionNamer(Scheme)
	c.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(generatedopenapi.GetOpenAPIDefinitions, namer)
	c.OpenAPIConfig.Info.Title = "Stargate"
	c.OpenAPIConfig.Info.Version = v1alpha1.SchemeGroupVersion.Version
	c.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(generatedopenapi.GetOpenAPIDefinitions, namer)
	c.OpenAPIV3Config.Info.Title = "Stargate"
	c.OpenAPIV3Config.Info.Version = v1alpha1.SchemeGroupVersion.Version
	c.FeatureGate = o.components.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	c.EffectiveVersion = o.components.EffectiveVersionFor(basecompatibility.DefaultKubeComponent)

	codec, err := StorageCodec(o.RecommendedOptions.Etcd.DefaultStorageMediaType)
	if err != nil {
		return nil, fmt.Errorf("--storage-media-type: %w", err)
	}
	o.RecommendedOptions.Etcd.StorageConfig.Codec = codec
	if err := o.ServerRun.ApplyTo(&c.Config); err != nil {
		return nil, err
	}
	if err := o.RecommendedOptions.ApplyTo(c); err != nil {
		return nil, err
	}
	return &Config{GenericConfig: c, Informers: o.informers}, nil
}

// StorageCodec is the codec of objects in etcd: it writes v1alpha1 in
// mediaType and reads v1alpha1 in any media type the server knows, so data
// written before a change of --storage-media-type stays readable.
func StorageCodec(mediaType string) (runtime.Codec, error) {
	codec, _, err := serverstorage.NewStorageCodec(serverstorage.StorageCodecConfig{
		StorageMediaType:  mediaType,
		StorageSerializer: Codecs,
		StorageVersion:    v1alpha1.SchemeGroupVersion,
		MemoryVersion:     schema.GroupVersion{Group: v1alpha1.GroupName, Version: runtime.APIVersionInternal},
	})
	return codec, err
}
