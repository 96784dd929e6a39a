package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cairndb/cairn/tlsutil"
	"github.com/spf13/cobra"
)

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Create a cluster CA and node certificates",
		Long: `Create a cluster CA and node certificates (ECDSA P-256).

Every node of a cluster needs a certificate signed by the cluster CA for
mutual TLS on its Raft port (--cluster-ca, --cluster-cert, --cluster-key of
cairn serve); the same certificate may serve the client API (--tls-cert,
--tls-key). Keep ca.key off the nodes.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newCertsCACmd(), newCertsNodeCmd())
	return cmd
}

func newCertsCACmd() *cobra.Command {
	var dir, name string
	var validFor time.Duration
	cmd := &cobra.Command{
		Use:     "ca",
		Short:   "Create a cluster CA: ca.crt and ca.key in --dir",
		Example: "  cairn certs ca --dir ./pki",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base := filepath.Join(dir, "ca")
			if err := refuseOverwrite(base); err != nil {
				return err
			}
			ca, err := tlsutil.NewCA(name, validFor)
			if err != nil {
				return err
			}
			key, err := ca.KeyPEM()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			if err := tlsutil.WritePair(base, ca.CertPEM(), key); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s.crt and %s.key (valid until %s)\n", base, base, ca.Cert.NotAfter.Format(time.DateOnly))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "directory to write ca.crt and ca.key to")
	cmd.Flags().StringVar(&name, "name", "cairn cluster CA", "the CA's common name")
	cmd.Flags().DurationVar(&validFor, "valid-for", 10*365*24*time.Hour, "validity")
	return cmd
}

func newCertsNodeCmd() *cobra.Command {
	var dir, caDir, name string
	var hosts []string
	var validFor time.Duration
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Issue a node certificate signed by the CA: <name>.crt and <name>.key",
		Long: `Issue a node certificate signed by the CA in --ca-dir, for server and
client authentication, naming --host (IP addresses and DNS names) as
subject alternative names. Name every address peers and clients dial:
the host of the node's Raft address (--raft-addr or --raft-advertise)
and, if the certificate also serves the client API, of its gRPC and REST
addresses.`,
		Example: "  cairn certs node --ca-dir ./pki --name n1 --host 10.0.0.1 --host n1.cairn.internal",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || len(hosts) == 0 {
				return errors.New("--name and at least one --host are required")
			}
			if dir == "" {
				dir = caDir
			}
			base := filepath.Join(dir, name)
			if err := refuseOverwrite(base); err != nil {
				return err
			}
			ca, err := tlsutil.LoadCAFiles(filepath.Join(caDir, "ca.crt"), filepath.Join(caDir, "ca.key"))
			if err != nil {
				return err
			}
			cert, key, err := ca.Issue(name, hosts, validFor)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			if err := tlsutil.WritePair(base, cert, key); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s.crt and %s.key for %v\n", base, base, hosts)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&caDir, "ca-dir", ".", "directory holding ca.crt and ca.key")
	fl.StringVar(&dir, "dir", "", "directory to write the certificate to (default: --ca-dir)")
	fl.StringVar(&name, "name", "", "the node's name: the certificate's common name and file name (required)")
	fl.StringSliceVar(&hosts, "host", nil, "an IP address or DNS name the node is reached at (repeatable; required)")
	fl.DurationVar(&validFor, "valid-for", 365*24*time.Hour, "validity (capped at the CA's)")
	return cmd
}

// refuseOverwrite fails when base.crt or base.key exists.
func refuseOverwrite(base string) error {
	for _, p := range []string{base + ".crt", base + ".key"} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists; remove it first to replace it", p)
		}
	}
	return nil
}
