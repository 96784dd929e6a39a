package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	peerv1 "github.com/cairndb/cairn/api/cairn/peer/v1"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode"
	"github.com/spf13/cobra"
)

// version and commit are set at build time with -ldflags "-X
// main.version=... -X main.commit=..." (make release, the Dockerfile). An
// empty commit falls back to the revision Go stamps into a build from a
// git checkout, if any.
var (
	version = "dev"
	commit  = ""
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version and the formats this build reads and writes",
		Example: "  cairn version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			commit := commit
			if info, ok := debug.ReadBuildInfo(); ok && commit == "" {
				for _, s := range info.Settings {
					if s.Key == "vcs.revision" {
						commit = s.Value
					}
				}
			}
			if commit == "" {
				commit = "unknown"
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "cairn %s (commit %s, %s)\nformats this build reads and writes:\n", version, commit, runtime.Version())
			for _, f := range formats() {
				fmt.Fprintf(w, "  %-24s %s\n", f.Name, f.Version)
			}
			return nil
		},
	}
}

// formats lists every versioned format of this build: what goes into the
// Raft log, onto disk and between nodes and clients.
func formats() []raftnode.Format {
	var types []string
	for _, t := range fsm.CommandTypes() {
		types = append(types, fmt.Sprint(t))
	}
	out := []raftnode.Format{
		{Name: "command envelope", Version: fmt.Sprintf("version %d", fsm.CommandVersion)},
		{Name: "command types", Version: strings.Join(types, " ")},
		{Name: "state database", Version: fmt.Sprintf("format %d", fsm.StorageVersion)},
		{Name: "snapshot stream", Version: fmt.Sprintf("format %d", fsm.SnapshotVersion)},
		{Name: "backup file", Version: fmt.Sprintf("format %d", fsm.BackupVersion)},
	}
	out = append(out, raftnode.Formats()...)
	return append(out,
		raftnode.Format{Name: "peer API", Version: peerv1.PeerService_ServiceDesc.ServiceName},
		raftnode.Format{Name: "client API", Version: strings.TrimSuffix(cairnv1.ObjectService_ServiceDesc.ServiceName, ".ObjectService")},
	)
}
