package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "cairn",
		Short:         "cairn: a replicated store for durable objects",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newDevCmd(), newVersionCmd(), newTokenCmd(), newCertsCmd(), newBenchCmd(), newCheckCmd())
	for _, c := range []*cobra.Command{newKVCmd(), newNSCmd(), newObjCmd(), newAlarmCmd(), newWatchCmd(), newClusterCmd(), newBackupCmd()} {
		addClientFlags(c)
		root.AddCommand(c)
	}
	return root
}

// bindEnv sets every flag of fs that was not given on the command line
// from the environment variable CAIRN_<FLAG> (upper case, '-' as '_').
func bindEnv(fs *pflag.FlagSet) error {
	var errs []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		env := "CAIRN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", env, err))
			}
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("environment: %s", strings.Join(errs, "; "))
	}
	return nil
}

// newLogger returns a text logger on stderr at level ("debug", "info",
// "warn", "error").
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
