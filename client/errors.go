package client

import (
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors a call may return, matched with errors.Is. The error itself is an
// *Error with the server's code and message.
var (
	ErrNotFound           = errors.New("client: not found")
	ErrInvalidArgument    = errors.New("client: invalid argument")
	ErrCompareFailed      = errors.New("client: expected revision did not hold")
	ErrFailedPrecondition = errors.New("client: failed precondition")
	ErrQuotaExceeded      = errors.New("client: quota exceeded")
	ErrOverloaded         = errors.New("client: node overloaded, retry later")
	ErrRequestIDReused    = errors.New("client: request id reused for another request")
	ErrCompacted          = errors.New("client: revision compacted")
	ErrUnavailable        = errors.New("client: cluster unavailable")
	ErrUnauthenticated    = errors.New("client: unauthenticated")
	ErrPermissionDenied   = errors.New("client: permission denied")
	ErrDeadlineExceeded   = errors.New("client: deadline exceeded")
	ErrCanceled           = errors.New("client: canceled")
)

// Error is an error answered by the cluster.
type Error struct {
	Code    codes.Code
	Message string
	// Reason is the ErrorInfo reason the server attached, if any
	// (REVISION_MISMATCH, OVERLOADED).
	Reason string
	// RetryAfter is the server's hint of when to try again (overload); 0
	// when it gave none.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code.String() + ": " + e.Message }

// Is matches e against this package's sentinel errors.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == codes.NotFound
	case ErrInvalidArgument:
		return e.Code == codes.InvalidArgument
	case ErrCompareFailed:
		return e.Code == codes.FailedPrecondition && e.Reason == "REVISION_MISMATCH"
	case ErrFailedPrecondition:
		return e.Code == codes.FailedPrecondition
	case ErrQuotaExceeded:
		return e.Code == codes.ResourceExhausted && e.Reason != "OVERLOADED"
	case ErrOverloaded:
		return e.Code == codes.ResourceExhausted && e.Reason == "OVERLOADED"
	case ErrRequestIDReused:
		return e.Code == codes.AlreadyExists
	case ErrCompacted:
		return e.Code == codes.OutOfRange
	case ErrUnavailable:
		return e.Code == codes.Unavailable
	case ErrUnauthenticated:
		return e.Code == codes.Unauthenticated
	case ErrPermissionDenied:
		return e.Code == codes.PermissionDenied
	case ErrDeadlineExceeded:
		return e.Code == codes.DeadlineExceeded
	case ErrCanceled:
		return e.Code == codes.Canceled
	}
	return false
}

// wrap turns a gRPC error into an *Error.
func wrap(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{Code: st.Code(), Message: st.Message()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			e.Reason = d.Reason
		case *errdetails.RetryInfo:
			e.RetryAfter = d.GetRetryDelay().AsDuration()
		}
	}
	return e
}
