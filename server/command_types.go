package server

import (
	"context"
	"fmt"
	"slices"

	peerv1 "github.com/cairndb/cairn/api/cairn/peer/v1"
	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"github.com/cairndb/cairn/fsm"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The cluster's command level, as etcd's cluster version: a node stops
// when it meets a command type it does not apply (fsm.CheckCommand), so
// during a rolling upgrade the leader must not propose a type that a
// member of the previous release lacks. Every release applies
// fsm.BaseCommandTypes, which are proposed without asking; before it
// proposes any other type the leader asks every member (PeerService
// CommandTypes) and refuses the command with FAILED_PRECONDITION while one
// of them does not apply it. The answers are not cached: any member may be
// restarted with another binary at any time, and only types newer than
// the base pay for the question. A member replaced between the question
// and the proposal is the operator's doing, and stops loudly.

// checkMembersApply returns an error wrapping ErrMemberTooOld when some
// member does not apply cmd's command type, and one wrapping
// ErrMemberUnreachable when a member cannot be asked. The leader calls it
// before it proposes cmd.
func (s *Server) checkMembersApply(ctx context.Context, cmd *raftcmdv1.Command) error {
	typ, name := fsm.CommandType(cmd)
	if fsm.IsBaseCommandType(typ) {
		return nil
	}
	return s.membersApply(ctx, typ, name)
}

// membersApply checks that every member of the Raft configuration applies
// command type typ (named name).
func (s *Server) membersApply(ctx context.Context, typ int32, name string) error {
	servers, err := s.node.Servers()
	if err != nil {
		return err
	}
	for _, m := range servers {
		types := fsm.CommandTypes()
		if m.ID != s.node.ID() {
			if types, err = s.memberCommandTypes(ctx, m.Address); err != nil {
				return fmt.Errorf("%w: cannot ask member %s which commands it applies before proposing %s: %w", ErrMemberUnreachable, m.ID, name, err)
			}
		}
		if !slices.Contains(types, typ) {
			return fmt.Errorf("%w: member %s does not apply command %s (type %d): it runs an older cairn release; upgrade every member before using it",
				ErrMemberTooOld, m.ID, name, typ)
		}
	}
	return nil
}

// memberCommandTypes asks the member at a Raft address which command types
// it applies. A release from before the question answers UNIMPLEMENTED
// and applies the base types.
func (s *Server) memberCommandTypes(ctx context.Context, raftAddr string) ([]int32, error) {
	conn, err := s.peers.conn(raftAddr, s.node.DialPeer)
	if err != nil {
		return nil, err
	}
	resp, err := peerClient(conn).CommandTypes(ctx, &peerv1.CommandTypesRequest{})
	if status.Code(err) == codes.Unimplemented {
		return fsm.BaseCommandTypes(), nil
	}
	if err != nil {
		return nil, err
	}
	return resp.Types, nil
}
