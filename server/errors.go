package server

import (
	"context"
	"errors"
	"strings"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors of the server itself.
var (
	// ErrNoLeader: no leader could be found in time (an election is
	// running, or a majority is down).
	ErrNoLeader = errors.New("server: no leader")
	// ErrLeaderUnreachable: the leader is known but could not be reached,
	// or did not answer; a write's outcome is unknown.
	ErrLeaderUnreachable = errors.New("server: leader unreachable")
)

// errorCodes is the one table that turns domain and Raft errors into gRPC
// codes (and so, through the gateway, HTTP statuses). Its test checks every
// sentinel of fsm, raftnode and this package is in it.
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{fsm.ErrInvalidArgument, codes.InvalidArgument},
	{fsm.ErrNamespaceNotFound, codes.NotFound},
	{fsm.ErrNamespaceNotEmpty, codes.FailedPrecondition},
	{fsm.ErrObjectNotFound, codes.NotFound},
	{fsm.ErrKeyNotFound, codes.NotFound},
	{fsm.ErrQuotaExceeded, codes.ResourceExhausted},
	{fsm.ErrMemberNotFound, codes.NotFound},
	{fsm.ErrBadSnapshot, codes.DataLoss},
	{fsm.ErrClosed, codes.Unavailable},
	{raftnode.ErrNotLeader, codes.Unavailable},
	{raftnode.ErrLeadershipLost, codes.Unavailable},
	{raftnode.ErrTimeout, codes.Unavailable},
	{raftnode.ErrShutdown, codes.Unavailable},
	{raftnode.ErrUnknownServer, codes.NotFound},
	{ErrNoLeader, codes.Unavailable},
	{ErrLeaderUnreachable, codes.Unavailable},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// toStatus converts err to a gRPC status error. Status errors pass through
// unchanged (a forwarded call's answer); errors not in the table are
// Internal.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return status.Error(e.code, userMessage(err))
		}
	}
	return status.Error(codes.Internal, userMessage(err))
}

// userMessage drops the package prefixes that sentinel errors carry.
func userMessage(err error) string {
	msg := err.Error()
	for _, p := range []string{"fsm: ", "raftnode: ", "server: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	return msg
}

// invalidf returns an InvalidArgument error naming a field and its limit.
func invalidf(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}
