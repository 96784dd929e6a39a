package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/client"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
)

func newKVCmd() *cobra.Command {
	kv := &cobra.Command{Use: "kv", Short: "Read and write an object's keys"}
	kv.AddCommand(newKVPutCmd(), newKVGetCmd(), newKVDelCmd(), newKVListCmd(), newKVTxnCmd())
	return kv
}

// keyJSON is the stable JSON form of a key in command output.
type keyJSON struct {
	Key            string          `json:"key"`
	Value          json.RawMessage `json:"value,omitempty"`
	BinaryValue    []byte          `json:"binary_value,omitempty"`
	CreateRevision uint64          `json:"create_revision"`
	ModRevision    uint64          `json:"mod_revision"`
}

func toKeyJSON(kv client.KeyValue) keyJSON {
	out := keyJSON{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision}
	if kv.JSON {
		out.Value = kv.Value
	} else {
		out.BinaryValue = kv.Value
		if out.BinaryValue == nil {
			out.BinaryValue = []byte{}
		}
	}
	return out
}

// display is how a value reads in a table: JSON text, or binary as
// quoted Go bytes.
func display(kv client.KeyValue) string {
	if kv.JSON {
		return string(kv.Value)
	}
	return fmt.Sprintf("(binary) %q", kv.Value)
}

func newKVPutCmd() *cobra.Command {
	var binary bool
	var ifRev int64
	var requestID string
	cmd := &cobra.Command{
		Use:   "put NAMESPACE OBJECT KEY VALUE",
		Short: "Write a key",
		Long: `Write a key. VALUE is a JSON document; text that is not JSON is stored as a
JSON string. With --binary VALUE is stored as raw bytes. A VALUE of - reads stdin.`,
		Example: `  cairn kv put chat room-1 msgs/1 '{"text":"hi"}'
  cairn kv put chat room-1 topic hello
  cairn kv put chat room-1 avatar --binary - < avatar.png
  cairn kv put chat room-1 topic '"moved"' --if-mod-revision 42`,
		Args: cobra.ExactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			raw := []byte(args[3])
			if args[3] == "-" {
				if raw, err = io.ReadAll(cmd.InOrStdin()); err != nil {
					return err
				}
			}
			var value any = raw
			if !binary {
				if json.Valid(raw) {
					value = json.RawMessage(raw)
				} else {
					value = string(raw)
				}
			}
			var opts []client.WriteOption
			if requestID != "" {
				opts = append(opts, client.WithRequestID(requestID))
			}
			if ifRev >= 0 {
				opts = append(opts, client.IfModRevision(uint64(ifRev)))
			}
			res, err := c.Put(cmd.Context(), args[0], args[1], args[2], value, opts...)
			if err != nil {
				return err
			}
			p := newPrinter(cmd)
			if p.json {
				return p.value(map[string]any{"revision": res.Revision, "created": res.Created, "replayed": res.Replayed})
			}
			p.table([]string{"REVISION", "CREATED", "REPLAYED"}, [][]string{{fmt.Sprint(res.Revision), fmt.Sprint(res.Created), fmt.Sprint(res.Replayed)}})
			return nil
		},
	}
	cmd.Flags().BoolVar(&binary, "binary", false, "store VALUE as raw bytes")
	cmd.Flags().Int64Var(&ifRev, "if-mod-revision", -1, "write only if the key's mod_revision is this (0: only if it does not exist)")
	cmd.Flags().StringVar(&requestID, "request-id", "", "idempotency key (default: a random one)")
	return cmd
}

func readFlags(cmd *cobra.Command) []client.ReadOption {
	var opts []client.ReadOption
	if s, _ := cmd.Flags().GetBool("serializable"); s {
		opts = append(opts, client.Serializable())
	}
	return opts
}

func addReadFlags(cmd *cobra.Command) {
	cmd.Flags().Bool("serializable", false, "read this node's state without asking the leader (fast, possibly stale)")
}

func newKVGetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "get NAMESPACE OBJECT KEY",
		Short:   "Read a key",
		Example: "  cairn kv get chat room-1 msgs/1\n  cairn kv get chat room-1 msgs/1 -o json",
		Args:    cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			kv, err := c.Get(cmd.Context(), args[0], args[1], args[2], readFlags(cmd)...)
			if err != nil {
				return err
			}
			p := newPrinter(cmd)
			if p.json {
				return p.value(toKeyJSON(kv))
			}
			p.table([]string{"KEY", "VALUE", "CREATE_REV", "MOD_REV"}, [][]string{{kv.Key, display(kv), fmt.Sprint(kv.CreateRevision), fmt.Sprint(kv.ModRevision)}})
			return nil
		},
	}
	addReadFlags(cmd)
	return cmd
}

func newKVDelCmd() *cobra.Command {
	var ifRev int64
	cmd := &cobra.Command{
		Use:     "del NAMESPACE OBJECT KEY",
		Short:   "Delete a key",
		Example: "  cairn kv del chat room-1 msgs/1\n  cairn kv del chat room-1 topic --if-mod-revision 42",
		Args:    cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			var opts []client.WriteOption
			if ifRev >= 0 {
				opts = append(opts, client.IfModRevision(uint64(ifRev)))
			}
			deleted, rev, err := c.Delete(cmd.Context(), args[0], args[1], args[2], opts...)
			if err != nil {
				return err
			}
			p := newPrinter(cmd)
			if p.json {
				return p.value(map[string]any{"deleted": deleted, "revision": rev})
			}
			p.table([]string{"DELETED", "REVISION"}, [][]string{{fmt.Sprint(deleted), fmt.Sprint(rev)}})
			return nil
		},
	}
	cmd.Flags().Int64Var(&ifRev, "if-mod-revision", -1, "delete only if the key's mod_revision is this")
	return cmd
}

func newKVListCmd() *cobra.Command {
	var lo client.ListOptions
	var limit int
	cmd := &cobra.Command{
		Use:     "list NAMESPACE OBJECT",
		Short:   "List an object's keys in order",
		Example: "  cairn kv list chat room-1 --prefix msgs/\n  cairn kv list chat room-1 --reverse --limit 10 --keys-only",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			p := newPrinter(cmd)
			var rows [][]string
			n := 0
			for kv, err := range c.Keys(cmd.Context(), args[0], args[1], lo, readFlags(cmd)...) {
				if err != nil {
					return err
				}
				if p.json {
					if err := p.value(toKeyJSON(kv)); err != nil {
						return err
					}
				} else {
					v := display(kv)
					if lo.KeysOnly {
						v = ""
					}
					rows = append(rows, []string{kv.Key, v, fmt.Sprint(kv.ModRevision)})
				}
				if n++; limit > 0 && n >= limit {
					break
				}
			}
			if !p.json {
				p.table([]string{"KEY", "VALUE", "MOD_REV"}, rows)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&lo.Prefix, "prefix", "", "only keys that start with this")
	f.StringVar(&lo.Start, "start", "", "first key (inclusive)")
	f.StringVar(&lo.StartAfter, "start-after", "", "list keys after this one")
	f.StringVar(&lo.End, "end", "", "end key (exclusive)")
	f.BoolVar(&lo.Reverse, "reverse", false, "highest key first")
	f.BoolVar(&lo.KeysOnly, "keys-only", false, "leave values out")
	f.IntVar(&limit, "limit", 0, "stop after this many keys (0: all)")
	addReadFlags(cmd)
	return cmd
}

func newKVTxnCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "txn NAMESPACE [FILE]",
		Short: "Run a transaction described in JSON (from FILE or stdin)",
		Long: `Run a transaction. The JSON is the body of POST /v1/namespaces/{ns}:txn:
{"compares": [...], "success": [...], "failure": [...]} (see the README).`,
		Example: `  echo '{"compares": [{"object": "a", "key": "bal", "value": 100}],
        "success": [{"put": {"object": "a", "key": "bal", "value": 60}}]}' | cairn kv txn bank
  cairn kv txn bank transfer.json`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := cmd.InOrStdin()
			if len(args) == 2 && args[1] != "-" {
				f, err := os.Open(args[1])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			body, err := io.ReadAll(in)
			if err != nil {
				return err
			}
			req := &cairnv1.TxnRequest{}
			if err := protojson.Unmarshal(body, req); err != nil {
				return fmt.Errorf("transaction JSON: %w", err)
			}
			req.Namespace = args[0]
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Txn(cmd.Context(), req)
			if err != nil {
				return err
			}
			p := newPrinter(cmd)
			if p.json {
				return p.message(resp)
			}
			branch := "failure"
			if resp.Succeeded {
				branch = "success"
			}
			p.table([]string{"SUCCEEDED", "BRANCH", "REVISION", "RESULTS"}, [][]string{{strconv.FormatBool(resp.Succeeded), branch, fmt.Sprint(resp.Revision), fmt.Sprint(len(resp.Results))}})
			return nil
		},
	}
	return cmd
}
