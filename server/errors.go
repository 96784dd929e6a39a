package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

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
	// ErrTooStale: a serializable read's max_staleness cannot be met here.
	ErrTooStale = errors.New("server: node too stale")
	// ErrLeaderUnreachable: the leader is known but could not be reached,
	// or did not answer; a write's outcome is unknown.
	ErrLeaderUnreachable = errors.New("server: leader unreachable")
	// ErrMemberTooOld: a member runs a release that does not apply the
	// command type, so proposing it would stop that member.
	ErrMemberTooOld = errors.New("server: a member does not apply this command type")
	// ErrMemberUnreachable: a member could not be asked which command
	// types it applies.
	ErrMemberUnreachable = errors.New("server: member unreachable")
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
	{fsm.ErrAlarmNotFound, codes.NotFound},
	{fsm.ErrStaleAck, codes.FailedPrecondition},
	{fsm.ErrWrongDeliveryMode, codes.FailedPrecondition},
	{fsm.ErrRequestIDReused, codes.AlreadyExists},
	{fsm.ErrBadBackup, codes.InvalidArgument}, // before ErrBadSnapshot: it may wrap both
	{fsm.ErrBadSnapshot, codes.DataLoss},
	{fsm.ErrUnsupportedCommand, codes.FailedPrecondition},
	{fsm.ErrClosed, codes.Unavailable},
	{fsm.ErrInUse, codes.Unavailable},
	{fsm.ErrStorage, codes.Unavailable},
	{fsm.ErrDamaged, codes.DataLoss},
	{raftnode.ErrNotLeader, codes.Unavailable},
	{raftnode.ErrLeadershipLost, codes.Unavailable},
	{raftnode.ErrTimeout, codes.Unavailable},
	{raftnode.ErrShutdown, codes.Unavailable},
	{raftnode.ErrUnknownServer, codes.NotFound},
	{raftnode.ErrLogStorage, codes.Unavailable},
	{ErrNoLeader, codes.Unavailable},
	{ErrTooStale, codes.Unavailable},
	{ErrCompacted, codes.OutOfRange},
	{ErrWatchTooSlow, codes.ResourceExhausted},
	{ErrWatchRestart, codes.Unavailable},
	{ErrLeaderUnreachable, codes.Unavailable},
	{ErrMemberTooOld, codes.FailedPrecondition},
	{ErrMemberUnreachable, codes.Unavailable},
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

// ReasonRevisionMismatch is the ErrorInfo reason of a conditional write
// whose expected revision did not hold; REST answers it with HTTP 412.
const ReasonRevisionMismatch = "REVISION_MISMATCH"

// revisionMismatch is the error of a conditional write whose expected
// mod_revision did not hold: FAILED_PRECONDITION with an ErrorInfo
// naming the reason.
func revisionMismatch(key string, expected uint64, current *raftcmdv1.StoredKey) error {
	var msg string
	switch {
	case current == nil:
		msg = fmt.Sprintf("key %q does not exist, expected mod_revision %d", key, expected)
	case expected == 0:
		msg = fmt.Sprintf("key %q exists with mod_revision %d, expected it not to exist (expected_mod_revision 0)", key, current.ModRevision)
	default:
		msg = fmt.Sprintf("key %q has mod_revision %d, expected %d", key, current.ModRevision, expected)
	}
	st, err := status.New(codes.FailedPrecondition, msg).WithDetails(&errdetails.ErrorInfo{
		Reason: ReasonRevisionMismatch, Domain: "cairn",
		Metadata: map[string]string{"key": key, "expected_mod_revision": fmt.Sprint(expected)},
	})
	if err != nil {
		return status.Error(codes.FailedPrecondition, msg)
	}
	return st.Err()
}

// hasReason reports whether st carries an ErrorInfo with reason.
func hasReason(st *status.Status, reason string) bool {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == reason {
			return true
		}
	}
	return false
}

// invalidf returns an InvalidArgument error naming a field and its limit.
func invalidf(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}
