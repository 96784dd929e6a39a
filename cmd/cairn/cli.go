package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// cliFlags are the flags every client command shares (persistent on the
// root command; each may come from CAIRN_<FLAG> too).
type cliFlags struct {
	endpoints []string
	token     string
	output    string
	cacert    string
	cert, key string
	timeout   time.Duration
}

var cli cliFlags

func addClientFlags(root *cobra.Command) {
	pf := root.PersistentFlags()
	addConnectionFlags(pf)
	pf.StringVarP(&cli.output, "output", "o", "table", "output format: table or json")
}

// addConnectionFlags adds the flags that say how to reach the cluster.
func addConnectionFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&cli.endpoints, "endpoints", []string{"127.0.0.1:7401", "127.0.0.1:7402", "127.0.0.1:7403"}, "gRPC addresses of cluster nodes (env CAIRN_ENDPOINTS)")
	fs.StringVar(&cli.token, "token", "", "bearer token (env CAIRN_TOKEN)")
	fs.StringVar(&cli.cacert, "cacert", "", "CA certificate (PEM) to verify the server's TLS certificate; enables TLS")
	fs.StringVar(&cli.cert, "cert", "", "client certificate (PEM) for mutual TLS")
	fs.StringVar(&cli.key, "key", "", "client key (PEM) for mutual TLS")
	fs.DurationVar(&cli.timeout, "timeout", 15*time.Second, "per-request timeout")
}

// newClient builds a client from the shared flags (and the environment).
func newClient(cmd *cobra.Command) (*client.Client, error) {
	cfg, err := clientConfig(cmd)
	if err != nil {
		return nil, err
	}
	if cli.output != "table" && cli.output != "json" {
		return nil, fmt.Errorf("--output %q: use table or json", cli.output)
	}
	return client.New(cfg)
}

// clientConfig reads the connection flags (and the environment) into a
// client configuration.
func clientConfig(cmd *cobra.Command) (client.Config, error) {
	if err := bindEnv(cmd.Flags()); err != nil {
		return client.Config{}, err
	}
	cfg := client.Config{Endpoints: cli.endpoints, Token: cli.token, RequestTimeout: cli.timeout}
	if cli.cacert != "" || cli.cert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cli.cacert != "" {
			pem, err := os.ReadFile(cli.cacert)
			if err != nil {
				return client.Config{}, fmt.Errorf("--cacert: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return client.Config{}, fmt.Errorf("--cacert %s holds no PEM certificate", cli.cacert)
			}
			tc.RootCAs = pool
		}
		if cli.cert != "" || cli.key != "" {
			pair, err := tls.LoadX509KeyPair(cli.cert, cli.key)
			if err != nil {
				return client.Config{}, fmt.Errorf("--cert/--key: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		cfg.TLS = tc
	}
	return cfg, nil
}

// printer writes command output as an aligned table or as JSON.
type printer struct {
	w    io.Writer
	json bool
}

func newPrinter(cmd *cobra.Command) printer {
	return printer{w: cmd.OutOrStdout(), json: cli.output == "json"}
}

// table writes a header and rows, aligned.
func (p printer) table(header []string, rows [][]string) {
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

// value writes v as one JSON document (a line).
func (p printer) value(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(p.w, string(b))
	return err
}

// message writes an API message as one line of JSON with the field names
// of the proto files (stable for scripts).
func (p printer) message(m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return err
	}
	_, err = fmt.Fprintln(p.w, compact.String())
	return err
}
