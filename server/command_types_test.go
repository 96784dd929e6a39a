package server

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"google.golang.org/grpc/codes"
)

// TestMembersApply: the leader asks every member, over the peer API on
// the Raft port, which command types it applies. A type all of them apply
// passes; a type one of them lacks is refused with FAILED_PRECONDITION
// naming the member and what to do; a member that cannot be asked makes
// the check fail with UNAVAILABLE rather than pass.
func TestMembersApply(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	leader := c.leader(t)
	s := leader.Server
	ctx := testCtx(t)

	for _, f := range c.followers(t) {
		resp, err := s.memberCommandTypes(ctx, f.Node.RaftAddr())
		if err != nil || !slices.Equal(resp, fsm.CommandTypes()) {
			t.Fatalf("%s applies command types %v (%v), want %v", f.id, resp, err, fsm.CommandTypes())
		}
	}
	if err := s.membersApply(ctx, 17, "set_alarm"); err != nil {
		t.Fatalf("a command type every member applies was refused: %v", err)
	}
	err := s.membersApply(ctx, 40, "future_command")
	if !errors.Is(err, ErrMemberTooOld) {
		t.Fatalf("a command type no member applies: %v, want ErrMemberTooOld", err)
	}
	wantCode(t, toStatus(err), codes.FailedPrecondition, "future_command", "type 40", "upgrade every member")

	f := c.followers(t)[0]
	f.stop()
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err = s.membersApply(short, 17, "set_alarm")
	if !errors.Is(err, ErrMemberUnreachable) {
		t.Fatalf("with member %s down: %v, want ErrMemberUnreachable", f.id, err)
	}
	wantCode(t, toStatus(err), codes.Unavailable, f.id)
}
