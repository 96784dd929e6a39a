package client

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestOverloadError: the server's overload answer (RESOURCE_EXHAUSTED,
// reason OVERLOADED, a RetryInfo) is ErrOverloaded with its retry hint, and
// not a quota error; a quota error is not an overload.
func TestOverloadError(t *testing.T) {
	st, err := status.New(codes.ResourceExhausted, "node n1 has 1024 writes in flight").WithDetails(
		&errdetails.RetryInfo{RetryDelay: durationpb.New(100 * time.Millisecond)},
		&errdetails.ErrorInfo{Reason: "OVERLOADED", Domain: "cairn"})
	if err != nil {
		t.Fatal(err)
	}
	overload := wrap(st.Err())
	var e *Error
	if !errors.Is(overload, ErrOverloaded) || errors.Is(overload, ErrQuotaExceeded) || !errors.As(overload, &e) || e.RetryAfter != 100*time.Millisecond {
		t.Fatalf("overload answer wrapped as %#v", overload)
	}
	quota := wrap(status.Error(codes.ResourceExhausted, "object o would hold 200 bytes, limit 100"))
	if !errors.Is(quota, ErrQuotaExceeded) || errors.Is(quota, ErrOverloaded) {
		t.Fatalf("quota answer wrapped as %#v", quota)
	}
}
