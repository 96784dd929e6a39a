package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/client"
	"github.com/spf13/cobra"
)

func newClusterCmd() *cobra.Command {
	cl := &cobra.Command{Use: "cluster", Short: "Inspect and change cluster membership (admin)"}
	status := &cobra.Command{
		Use:     "status",
		Short:   "Show every member: role, leader, term, commit and applied index, last contact, health",
		Example: "  cairn cluster status\n  cairn cluster status -o json",
		Args:    cobra.NoArgs,
		RunE:    runClusterStatus,
	}
	var grpcAddr, httpAddr string
	var nonvoter bool
	add := &cobra.Command{
		Use:     "add ID RAFT_ADDR",
		Short:   "Add a member (a voter unless --nonvoter)",
		Example: "  cairn cluster add n4 10.0.0.4:7500 --grpc-addr 10.0.0.4:7400 --http-addr 10.0.0.4:7300",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.AddMember(cmd.Context(), &cairnv1.AddMemberRequest{Id: args[0], RaftAddr: args[1], GrpcAddr: grpcAddr, HttpAddr: httpAddr, Nonvoter: nonvoter})
			if err != nil {
				return err
			}
			return printMembers(cmd, resp.Members)
		},
	}
	add.Flags().StringVar(&grpcAddr, "grpc-addr", "", "the member's gRPC address")
	add.Flags().StringVar(&httpAddr, "http-addr", "", "the member's REST address")
	add.Flags().BoolVar(&nonvoter, "nonvoter", false, "add a non-voting member (a read replica)")
	remove := &cobra.Command{
		Use:     "remove ID",
		Short:   "Remove a member",
		Example: "  cairn cluster remove n4",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.RemoveMember(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return nil
		},
	}
	transfer := &cobra.Command{
		Use:     "transfer-leader [ID]",
		Short:   "Hand leadership to a member (any suitable voter when no ID)",
		Example: "  cairn cluster transfer-leader n2\n  cairn cluster transfer-leader",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			leader, err := c.TransferLeadership(cmd.Context(), id)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "leader is now %s\n", leader)
			return nil
		},
	}
	snapshot := &cobra.Command{
		Use:     "snapshot",
		Short:   "Take a Raft snapshot on every member and compact their logs",
		Example: "  cairn cluster snapshot",
		Args:    cobra.NoArgs,
		RunE:    runClusterSnapshot,
	}
	hash := &cobra.Command{
		Use:     "hash",
		Short:   "Show every member's state hash and the applied index it covers",
		Long:    "Members at the same applied index hold the same state, so their hashes must be equal; run it when no writes are in flight to compare all members.",
		Example: "  cairn cluster hash\n  cairn cluster hash -o json",
		Args:    cobra.NoArgs,
		RunE:    runClusterHash,
	}
	cl.AddCommand(status, add, remove, transfer, snapshot, hash)
	return cl
}

// memberStatus is one row of cluster status.
type memberStatus struct {
	ID            string `json:"id"`
	RaftAddr      string `json:"raft_addr"`
	GRPCAddr      string `json:"grpc_addr"`
	Voter         bool   `json:"voter"`
	Role          string `json:"role"`
	Leader        string `json:"leader"`
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	LastContactMs int64  `json:"last_contact_ms"`
	Health        string `json:"health"`
}

// runClusterStatus asks one node for the members, then each member for
// its own view.
func runClusterStatus(cmd *cobra.Command, _ []string) error {
	c, err := newClient(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	view, err := c.Cluster(cmd.Context())
	if err != nil {
		return err
	}
	var rows []memberStatus
	for _, m := range view.Members {
		row := memberStatus{ID: m.Id, RaftAddr: m.RaftAddr, GRPCAddr: m.GrpcAddr, Voter: m.Voter, Health: "unreachable"}
		if m.GrpcAddr != "" {
			if mc, err := client.New(client.Config{Endpoints: []string{m.GrpcAddr}, Token: cli.token, TLS: c.TLSConfig(), RetryFor: time.Millisecond}); err == nil {
				ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
				own, err := mc.ClusterOf(ctx, 0)
				cancel()
				mc.Close()
				if err == nil {
					row.Role, row.Leader, row.Term = own.State, own.LeaderId, own.Term
					row.CommitIndex, row.AppliedIndex, row.LastContactMs = own.CommitIndex, own.AppliedIndex, own.LastContactMs
					row.Health = "healthy"
					if !own.Ready {
						row.Health = "not ready"
					}
				} else {
					row.Health = "unreachable: " + err.Error()
				}
			}
		}
		rows = append(rows, row)
	}
	p := newPrinter(cmd)
	if p.json {
		return p.value(rows)
	}
	var table [][]string
	for _, r := range rows {
		contact := "-"
		if r.Role != "" && r.Role != "Leader" {
			contact = fmt.Sprintf("%dms", r.LastContactMs)
		}
		table = append(table, []string{r.ID, r.RaftAddr, r.GRPCAddr, r.Role, r.Leader, fmt.Sprint(r.Term),
			fmt.Sprintf("%d/%d", r.CommitIndex, r.AppliedIndex), contact, r.Health})
	}
	p.table([]string{"ID", "RAFT", "GRPC", "ROLE", "LEADER", "TERM", "COMMIT/APPLIED", "LAST_CONTACT", "HEALTH"}, table)
	return nil
}

func printMembers(cmd *cobra.Command, members []*cairnv1.Member) error {
	p := newPrinter(cmd)
	if p.json {
		for _, m := range members {
			if err := p.message(m); err != nil {
				return err
			}
		}
		return nil
	}
	var rows [][]string
	for _, m := range members {
		rows = append(rows, []string{m.Id, m.RaftAddr, m.GrpcAddr, m.HttpAddr, fmt.Sprint(m.Voter), fmt.Sprint(m.Leader)})
	}
	p.table([]string{"ID", "RAFT", "GRPC", "HTTP", "VOTER", "LEADER"}, rows)
	return nil
}

// memberAnswer is one member's answer to a per-member operation.
type memberAnswer struct {
	ID    string `json:"id"`
	Index uint64 `json:"index"`
	Hash  string `json:"hash,omitempty"`
	Error string `json:"error,omitempty"`
}

// askEachMember calls ask on every member through its own gRPC address,
// prints the answers (columns: ID, indexColumn, then HASH when withHash)
// and fails when any member could not answer.
func askEachMember(cmd *cobra.Command, indexColumn string, withHash bool, ask func(ctx context.Context, mc *client.Client, a *memberAnswer) error) error {
	c, err := newClient(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	view, err := c.Cluster(cmd.Context())
	if err != nil {
		return err
	}
	var answers []memberAnswer
	failed := 0
	for _, m := range view.Members {
		a := memberAnswer{ID: m.Id}
		mc, err := client.New(client.Config{Endpoints: []string{m.GrpcAddr}, Token: cli.token, TLS: c.TLSConfig(), RetryFor: time.Millisecond})
		if err == nil {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			err = ask(ctx, mc, &a)
			cancel()
			mc.Close()
		}
		if err != nil {
			a.Error = err.Error()
			failed++
		}
		answers = append(answers, a)
	}
	p := newPrinter(cmd)
	if p.json {
		if err := p.value(answers); err != nil {
			return err
		}
	} else {
		header := []string{"ID", indexColumn}
		if withHash {
			header = append(header, "HASH")
		}
		var table [][]string
		for _, a := range answers {
			row := []string{a.ID, fmt.Sprint(a.Index)}
			if withHash {
				row = append(row, a.Hash)
			}
			table = append(table, append(row, a.Error))
		}
		p.table(append(header, "ERROR"), table)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d members did not answer", failed, len(answers))
	}
	return nil
}

// runClusterSnapshot asks each member to snapshot itself.
func runClusterSnapshot(cmd *cobra.Command, _ []string) error {
	return askEachMember(cmd, "SNAPSHOT_INDEX", false, func(ctx context.Context, mc *client.Client, a *memberAnswer) (err error) {
		a.Index, err = mc.SnapshotOf(ctx, 0)
		return err
	})
}

// runClusterHash asks each member for its state hash. Members at the same
// applied index must show the same hash.
func runClusterHash(cmd *cobra.Command, _ []string) error {
	return askEachMember(cmd, "APPLIED_INDEX", true, func(ctx context.Context, mc *client.Client, a *memberAnswer) error {
		hash, index, err := mc.StateHashOf(ctx, 0)
		a.Hash, a.Index = hex.EncodeToString(hash), index
		return err
	})
}
