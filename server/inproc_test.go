package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// fakeObjects answers GetKey with what its test sets, after recording
// what the call saw.
type fakeObjects struct {
	cairnv1.UnimplementedObjectServiceServer
	got      *cairnv1.GetKeyRequest
	incoming metadata.MD
	outgoing metadata.MD
	reply    *cairnv1.GetKeyResponse
	err      error
}

func (f *fakeObjects) GetKey(ctx context.Context, req *cairnv1.GetKeyRequest) (*cairnv1.GetKeyResponse, error) {
	f.got = req
	f.incoming, _ = metadata.FromIncomingContext(ctx)
	f.outgoing, _ = metadata.FromOutgoingContext(ctx)
	return f.reply, f.err
}

// streamsOnly stands for the in-memory gRPC connection: it records what
// reached it.
type streamsOnly struct{ invoked []string }

func (s *streamsOnly) Invoke(_ context.Context, method string, _, _ any, _ ...grpc.CallOption) error {
	s.invoked = append(s.invoked, method)
	return status.Error(codes.Unimplemented, "over the listener")
}

func (s *streamsOnly) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "over the listener")
}

func newTestInproc(impl *fakeObjects, ics ...grpc.UnaryServerInterceptor) (*inprocConn, *streamsOnly) {
	methods := inprocMethods{}
	methods.add(&cairnv1.ObjectService_ServiceDesc, impl)
	next := &streamsOnly{}
	return &inprocConn{next: next, methods: methods, chain: chainUnary(ics), maxRecv: 1 << 10}, next
}

// TestInprocConnCallsHandlerInProcess: a registered unary method runs the
// interceptors in order and the handler without going over the listener;
// the handler gets a copy of the request and the gateway's outgoing
// metadata as incoming, with none outgoing; the reply is a copy of what
// it returned.
func TestInprocConnCallsHandlerInProcess(t *testing.T) {
	impl := &fakeObjects{reply: &cairnv1.GetKeyResponse{Key: "k", ModRevision: 7, Content: &cairnv1.GetKeyResponse_BinaryValue{BinaryValue: []byte("v")}}}
	var order []string
	ic := func(name string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			order = append(order, name+" "+info.FullMethod)
			return h(ctx, req)
		}
	}
	c, next := newTestInproc(impl, ic("first"), ic("second"))
	req := &cairnv1.GetKeyRequest{Namespace: "ns", Object: "o", Key: "k", Consistency: Serializable}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer t")
	got, err := cairnv1.NewObjectServiceClient(c).GetKey(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(next.invoked) != 0 {
		t.Fatalf("went over the listener: %v", next.invoked)
	}
	if want := []string{"first " + cairnv1.ObjectService_GetKey_FullMethodName, "second " + cairnv1.ObjectService_GetKey_FullMethodName}; strings.Join(order, ",") != strings.Join(want, ",") {
		t.Fatalf("interceptors ran %v, want %v", order, want)
	}
	if !proto.Equal(impl.got, req) || impl.got == req {
		t.Fatalf("handler got %v (same pointer: %v), want a copy of %v", impl.got, impl.got == req, req)
	}
	if v := impl.incoming.Get("authorization"); len(v) != 1 || v[0] != "Bearer t" {
		t.Fatalf("incoming authorization %v", v)
	}
	if len(impl.outgoing) != 0 {
		t.Fatalf("handler's context carries outgoing metadata %v", impl.outgoing)
	}
	if !proto.Equal(got, impl.reply) || got == impl.reply {
		t.Fatalf("reply %v (same pointer: %v), want a copy of %v", got, got == impl.reply, impl.reply)
	}
}

// TestInprocConnErrors: errors reach the gateway as a gRPC server would
// send them, an oversized request is refused before any interceptor, and
// methods not registered go over the listener.
func TestInprocConnErrors(t *testing.T) {
	impl := &fakeObjects{}
	ran := 0
	count := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ran++
		return h(ctx, req)
	}
	c, next := newTestInproc(impl, count)
	client := cairnv1.NewObjectServiceClient(c)
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{status.Error(codes.NotFound, "key k not found"), codes.NotFound, "key k not found"},
		{context.DeadlineExceeded, codes.DeadlineExceeded, ""},
		{context.Canceled, codes.Canceled, ""},
		{errors.New("plain"), codes.Unknown, "plain"},
	} {
		impl.err = tc.err
		_, err := client.GetKey(ctx, &cairnv1.GetKeyRequest{Namespace: "ns", Object: "o", Key: "k"})
		if st, _ := status.FromError(err); st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
			t.Errorf("handler error %v: got %v, want %v %q", tc.err, err, tc.code, tc.msg)
		}
	}
	ran = 0
	_, err := client.GetKey(ctx, &cairnv1.GetKeyRequest{Namespace: "ns", Object: "o", Key: strings.Repeat("k", 2000)})
	wantCode(t, err, codes.ResourceExhausted, "larger than max", "vs. 1024")
	if ran != 0 {
		t.Fatalf("an oversized request reached the interceptors")
	}
	if err := c.Invoke(ctx, "/cairn.v1.Other/Method", &cairnv1.GetKeyRequest{}, &cairnv1.GetKeyResponse{}); status.Code(err) != codes.Unimplemented || len(next.invoked) != 1 {
		t.Fatalf("unregistered method: %v, over the listener %v", err, next.invoked)
	}
}
