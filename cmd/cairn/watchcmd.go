package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/client"
	"github.com/spf13/cobra"
)

func newWatchCmd() *cobra.Command {
	req := &cairnv1.WatchRequest{}
	cmd := &cobra.Command{
		Use:   "watch NAMESPACE [OBJECT]",
		Short: "Follow changes as they happen (Ctrl-C to stop)",
		Long: `Print changes as they are applied: of one object, or of every object of a
namespace. The stream resumes on another node by itself; with --start-revision
it starts from an earlier revision (the last one seen plus one).`,
		Example: `  cairn watch chat room-1 --prefix msgs/
  cairn watch chat --object-prefix room- -o json
  cairn watch chat room-1 --start-revision 120`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Namespace = args[0]
			if len(args) == 2 {
				req.Object = args[1]
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			w, err := c.Watch(cmd.Context(), req)
			if err != nil {
				return err
			}
			p := newPrinter(cmd)
			for {
				resp, err := w.Next(false)
				if err != nil {
					if errors.Is(err, client.ErrCanceled) || cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				if p.json {
					if err := p.message(resp); err != nil {
						return err
					}
					continue
				}
				for _, ev := range resp.Events {
					value := ""
					switch c := ev.Content.(type) {
					case *cairnv1.Event_Value:
						b, _ := json.Marshal(c.Value.AsInterface())
						value = string(b)
					case *cairnv1.Event_BinaryValue:
						value = fmt.Sprintf("(binary) %q", c.BinaryValue)
					}
					typ := strings.TrimPrefix(ev.Type.String(), "EVENT_TYPE_")
					fmt.Fprintf(p.w, "%d\t%s\t%s\t%s\t%s\n", resp.Revision, typ, ev.Object, ev.Key, value)
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Prefix, "prefix", "", "only keys that start with this")
	f.StringVar(&req.ObjectPrefix, "object-prefix", "", "namespace watch: only objects whose names start with this")
	f.Uint64Var(&req.StartRevision, "start-revision", 0, "first revision to deliver (0: changes from now on)")
	f.BoolVar(&req.NoValues, "no-values", false, "leave values out")
	return cmd
}
