package main

import (
	"fmt"
	"runtime/debug"

	"github.com/cairndb/cairn/fsm"
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version and the formats this build reads and writes",
		Example: "  cairn version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			commit := "unknown"
			if info, ok := debug.ReadBuildInfo(); ok {
				for _, s := range info.Settings {
					if s.Key == "vcs.revision" {
						commit = s.Value
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cairn %s (commit %s)\ncommand format %d, snapshot format %d\n",
				version, commit, fsm.CommandVersion, fsm.SnapshotVersion)
			return nil
		},
	}
}
