package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
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
	block    bool // wait for the call's context to end before answering
}

func (f *fakeObjects) GetKey(ctx context.Context, req *cairnv1.GetKeyRequest) (*cairnv1.GetKeyResponse, error) {
	f.got = req
	f.incoming, _ = metadata.FromIncomingContext(ctx)
	f.outgoing, _ = metadata.FromOutgoingContext(ctx)
	if f.block {
		<-ctx.Done()
	}
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
	return &inprocConn{next: next, methods: methods, chain: chainUnary(ics), maxRecv: 1 << 10, maxSend: 1 << 11}, next
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
// send them; what the gRPC connection refused before sending (an expired
// deadline, a request over the size limit, a string that is not UTF-8)
// never reaches an interceptor; an answer over the size limit is refused;
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
	get := &cairnv1.GetKeyRequest{Namespace: "ns", Object: "o", Key: "k"}
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
		_, err := client.GetKey(ctx, get)
		if st, _ := status.FromError(err); st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
			t.Errorf("handler error %v: got %v, want %v %q", tc.err, err, tc.code, tc.msg)
		}
	}

	// The caller's deadline passes while the handler runs: the call ends
	// with it, whatever the handler answers; a call whose deadline has
	// passed does not start.
	impl.err, impl.block = status.Error(codes.Unavailable, "no leader: context deadline exceeded"), true
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	ran = 0
	_, err := client.GetKey(short, get)
	wantCode(t, err, codes.DeadlineExceeded)
	if ran != 1 {
		t.Fatalf("the interceptors ran %d times, want 1", ran)
	}
	_, err = client.GetKey(short, get)
	wantCode(t, err, codes.DeadlineExceeded)
	if ran != 1 {
		t.Fatalf("a call whose deadline had passed reached the interceptors")
	}
	impl.err, impl.block = nil, false

	for _, tc := range []struct {
		name string
		req  *cairnv1.GetKeyRequest
		code codes.Code
		msg  []string
	}{
		{"oversized", &cairnv1.GetKeyRequest{Namespace: "ns", Object: "o", Key: strings.Repeat("k", 2000)}, codes.ResourceExhausted, []string{"larger than max", "vs. 1024"}},
		{"not UTF-8", &cairnv1.GetKeyRequest{Namespace: "ns", Object: "o\xff", Key: "k"}, codes.InvalidArgument, []string{"object is not valid UTF-8"}},
	} {
		ran = 0
		_, err := client.GetKey(ctx, tc.req)
		wantCode(t, err, tc.code, tc.msg...)
		if ran != 0 {
			t.Fatalf("%s: the request reached the interceptors", tc.name)
		}
	}

	impl.reply = &cairnv1.GetKeyResponse{Key: "k", Content: &cairnv1.GetKeyResponse_BinaryValue{BinaryValue: make([]byte, 3000)}}
	_, err = client.GetKey(ctx, get)
	wantCode(t, err, codes.ResourceExhausted, "larger than max", "vs. 2048")

	if err := c.Invoke(ctx, "/cairn.v1.Other/Method", &cairnv1.GetKeyRequest{}, &cairnv1.GetKeyResponse{}); status.Code(err) != codes.Unimplemented || len(next.invoked) != 1 {
		t.Fatalf("unregistered method: %v, over the listener %v", err, next.invoked)
	}
}

// TestRESTCallLimits: over REST, a call keeps the limits the gateway's
// gRPC connection enforced: a deadline that has passed (Grpc-Timeout)
// answers 504 and writes nothing, a string parameter that is not UTF-8
// answers 400 naming it, and an answer over 64 MiB answers 429, as the
// same call over gRPC does.
func TestRESTCallLimits(t *testing.T) {
	c := mustStartCluster(t, 1, clusterOptions{})
	n := c.leader(t)
	mustPutNamespace(t, n, "lim")
	call := func(method, path, body string, hdr map[string]string) (int, string) {
		t.Helper()
		code, b := restCallWith(t, n, method, path, body, hdr)
		return code, string(b)
	}

	code, body := call("PUT", "/v1/namespaces/lim/objects/o/keys/late", `{"value": 1}`, map[string]string{"Grpc-Timeout": "1n"})
	if code != http.StatusGatewayTimeout {
		t.Fatalf("PUT with a passed deadline: HTTP %d %s, want 504", code, body)
	}
	if code, body := call("GET", "/v1/namespaces/lim/objects/o/keys/late", "", nil); code != http.StatusNotFound {
		t.Fatalf("GET after a PUT whose deadline had passed: HTTP %d %s, want 404", code, body)
	}

	code, body = call("GET", "/v1/namespaces/lim/objects/o/keys?prefix=%FF", "", nil)
	if code != http.StatusBadRequest || !strings.Contains(body, "prefix is not valid UTF-8") {
		t.Fatalf("list with a prefix that is not UTF-8: HTTP %d %s, want 400 naming prefix", code, body)
	}

	big := make([]byte, 1<<20)
	if _, err := n.objects().PutKey(testCtx(t), &cairnv1.PutKeyRequest{Namespace: "lim", Object: "o", Key: "big", Content: &cairnv1.PutKeyRequest_BinaryValue{BinaryValue: big}}); err != nil {
		t.Fatal(err)
	}
	keys := strings.TrimSuffix(strings.Repeat(`"big",`, 65), ",")
	code, body = call("POST", "/v1/namespaces/lim/objects/o:batchGet", `{"keys": [`+keys+`]}`, nil)
	if code != http.StatusTooManyRequests || !strings.Contains(body, "larger than max") {
		t.Fatalf("batchGet of 65 MiB: HTTP %d %.200s, want 429", code, body)
	}
	if code, body := call("POST", "/v1/namespaces/lim/objects/o:batchGet", `{"keys": ["big"]}`, nil); code != http.StatusOK {
		t.Fatalf("batchGet of 1 MiB: HTTP %d %.200s, want 200", code, body)
	}
}

// TestCheckUTF8NamesThePath: an in-process call names a nested field by its
// path, as the gRPC server's codec does (codec.go), not by its name alone.
func TestCheckUTF8NamesThePath(t *testing.T) {
	for _, tc := range []struct {
		req  proto.Message
		want string
	}{
		{&cairnv1.BatchWriteRequest{Namespace: "ns", Object: "o", Puts: []*cairnv1.KeyPut{{Key: "ok"}, {Key: "k\xff"}}}, "puts.key is not valid UTF-8"},
		{&cairnv1.BatchWriteRequest{Namespace: "ns", Object: "o", Deletes: []string{"ok", "\xff"}}, "deletes is not valid UTF-8"},
		{&cairnv1.GetKeyRequest{Namespace: "n\xffs", Object: "o", Key: "k"}, "namespace is not valid UTF-8"},
		// A map's entries are named as messages of a key and a value.
		{jsonPut(map[string]*structpb.Value{"ok": structpb.NewNullValue(), "k\xff": structpb.NewNullValue()}), "value.struct_value.fields.key is not valid UTF-8"},
		{jsonPut(map[string]*structpb.Value{"ok": structpb.NewStringValue("v\xff")}), "value.struct_value.fields.value.string_value is not valid UTF-8"},
	} {
		err := checkUTF8(tc.req.ProtoReflect(), "")
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != tc.want {
			t.Errorf("checkUTF8(%v) = %v, want InvalidArgument %q", tc.req, err, tc.want)
		}
	}
	if err := checkUTF8((&cairnv1.BatchWriteRequest{Namespace: "ns", Puts: []*cairnv1.KeyPut{{Key: "k"}}}).ProtoReflect(), ""); err != nil {
		t.Errorf("checkUTF8 of valid strings = %v", err)
	}
}

// jsonPut is a put of a JSON object with fields.
func jsonPut(fields map[string]*structpb.Value) *cairnv1.PutKeyRequest {
	return &cairnv1.PutKeyRequest{Namespace: "ns", Object: "o", Key: "k", Content: &cairnv1.PutKeyRequest_Value{
		Value: structpb.NewStructValue(&structpb.Struct{Fields: fields})}}
}
