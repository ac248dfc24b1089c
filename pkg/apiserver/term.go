package apiserver

import (
	"github.com/spf13/cobra"
	"k8s.io/component-base/term"
)

// termSize is the width of the terminal help is printed to, 0 when none.
func termSize(cmd *cobra.Command) (int, int, error) {
	w, h, err := term.TerminalSize(cmd.OutOrStdout())
	return w, h, err
}
