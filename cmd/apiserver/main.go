// Command stargate-apiserver serves the stargate.io aggregated API.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/stargate-k8s/stargate/pkg/apiserver"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	cmd := apiserver.NewCommand(ctx, apiserver.NewOptions(os.Stdout))
	os.Exit(cli.Run(cmd))
}
