package main

import (
	"fmt"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/spf13/cobra"
)

func newNSCmd() *cobra.Command {
	ns := &cobra.Command{Use: "ns", Short: "Manage namespaces (admin)"}
	var maxObjectBytes uint64
	create := &cobra.Command{
		Use:     "create NAMESPACE",
		Short:   "Create a namespace, or change its settings",
		Example: "  cairn ns create chat\n  cairn ns create chat --max-object-bytes 1048576",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.PutNamespace(cmd.Context(), args[0], &cairnv1.NamespaceSettings{MaxObjectBytes: maxObjectBytes})
			if err != nil {
				return err
			}
			return printNamespaces(cmd, resp.Namespace)
		},
	}
	create.Flags().Uint64Var(&maxObjectBytes, "max-object-bytes", 0, "storage quota of each object (0: none)")
	list := &cobra.Command{
		Use:     "list",
		Short:   "List namespaces",
		Example: "  cairn ns list\n  cairn ns list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			all, err := c.Namespaces(cmd.Context())
			if err != nil {
				return err
			}
			return printNamespaces(cmd, all...)
		},
	}
	info := &cobra.Command{
		Use:     "info NAMESPACE",
		Short:   "Show a namespace",
		Example: "  cairn ns info chat",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			n, err := c.Namespace(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printNamespaces(cmd, n)
		},
	}
	var force bool
	del := &cobra.Command{
		Use:     "delete NAMESPACE",
		Short:   "Delete a namespace (refused while it holds objects, unless --force)",
		Example: "  cairn ns delete chat\n  cairn ns delete chat --force",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			n, err := c.DeleteNamespace(cmd.Context(), args[0], force)
			if err != nil {
				return err
			}
			p := newPrinter(cmd)
			if p.json {
				return p.value(map[string]any{"namespace": args[0], "deleted_objects": n})
			}
			p.table([]string{"NAMESPACE", "DELETED_OBJECTS"}, [][]string{{args[0], fmt.Sprint(n)}})
			return nil
		},
	}
	del.Flags().BoolVar(&force, "force", false, "delete the namespace's objects too")
	ns.AddCommand(create, list, info, del)
	return ns
}

func printNamespaces(cmd *cobra.Command, all ...*cairnv1.Namespace) error {
	p := newPrinter(cmd)
	if p.json {
		for _, n := range all {
			if err := p.message(n); err != nil {
				return err
			}
		}
		return nil
	}
	var rows [][]string
	for _, n := range all {
		quota := "none"
		if q := n.GetSettings().GetMaxObjectBytes(); q > 0 {
			quota = fmt.Sprint(q)
		}
		rows = append(rows, []string{n.Name, fmt.Sprint(n.ObjectCount), quota, fmt.Sprint(n.CreateRevision), fmt.Sprint(n.ModRevision)})
	}
	p.table([]string{"NAMESPACE", "OBJECTS", "MAX_OBJECT_BYTES", "CREATE_REV", "MOD_REV"}, rows)
	return nil
}
