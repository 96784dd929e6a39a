package main

import (
	"fmt"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/spf13/cobra"
)

func newObjCmd() *cobra.Command {
	obj := &cobra.Command{Use: "obj", Short: "List, inspect and delete objects"}
	var prefix string
	list := &cobra.Command{
		Use:     "list NAMESPACE",
		Short:   "List a namespace's objects in name order",
		Example: "  cairn obj list chat\n  cairn obj list chat --prefix room-",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			p := newPrinter(cmd)
			var all []*cairnv1.ObjectInfo
			for o, err := range c.Objects(cmd.Context(), args[0], prefix) {
				if err != nil {
					return err
				}
				if p.json {
					if err := p.message(o); err != nil {
						return err
					}
					continue
				}
				all = append(all, o)
			}
			if !p.json {
				printObjects(p, all...)
			}
			return nil
		},
	}
	list.Flags().StringVar(&prefix, "prefix", "", "only objects whose names start with this")
	info := &cobra.Command{
		Use:     "info NAMESPACE OBJECT",
		Short:   "Show an object: revision, key count, bytes, shard",
		Example: "  cairn obj info chat room-1",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			o, err := c.Object(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			p := newPrinter(cmd)
			if p.json {
				return p.message(o)
			}
			printObjects(p, o)
			return nil
		},
	}
	del := &cobra.Command{
		Use:     "delete NAMESPACE OBJECT",
		Short:   "Delete all of an object's state, atomically",
		Example: "  cairn obj delete chat room-1",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			n, err := c.DeleteObject(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			p := newPrinter(cmd)
			if p.json {
				return p.value(map[string]any{"object": args[1], "deleted_keys": n})
			}
			p.table([]string{"OBJECT", "DELETED_KEYS"}, [][]string{{args[1], fmt.Sprint(n)}})
			return nil
		},
	}
	obj.AddCommand(list, info, del)
	return obj
}

func printObjects(p printer, all ...*cairnv1.ObjectInfo) {
	var rows [][]string
	for _, o := range all {
		rows = append(rows, []string{o.Name, fmt.Sprint(o.KeyCount), fmt.Sprint(o.Bytes), fmt.Sprint(o.Shard), fmt.Sprint(o.Revision)})
	}
	p.table([]string{"OBJECT", "KEYS", "BYTES", "SHARD", "REVISION"}, rows)
}
