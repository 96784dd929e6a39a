package server

import (
	"errors"
	"io"
	"strings"
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// rawCodec sends a request's bytes as they are: Go's protobuf encoding
// refuses a string that is not UTF-8, and a client in another language,
// or a broken one, may send one.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// withBadString encodes m, then field (a string field of m's type, or of
// the message in field at: "puts.key") once more with bytes that are not
// UTF-8.
func withBadString(t *testing.T, m proto.Message, at ...string) []byte {
	t.Helper()
	var enc func(md protoreflect.MessageDescriptor, path []string) []byte
	enc = func(md protoreflect.MessageDescriptor, path []string) []byte {
		fd := md.Fields().ByName(protoreflect.Name(path[0]))
		if fd == nil {
			t.Fatalf("%s has no field %s", md.FullName(), path[0])
		}
		v := []byte("bad\xff")
		if len(path) > 1 {
			v = enc(fd.Message(), path[1:])
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, fd.Number(), protowire.BytesType), v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, enc(m.ProtoReflect().Descriptor(), at)...)
}

// TestGRPCRefusesUndecodableRequests: a request that is not valid protobuf
// for its method, or holds a string that is not UTF-8, is answered
// InvalidArgument (grpc-go alone answers Internal) with a message naming
// the field, and changes nothing; a client cannot forge that answer.
func TestGRPCRefusesUndecodableRequests(t *testing.T) {
	c := mustStartCluster(t, 1, clusterOptions{})
	n := c.leader(t)
	mustPutNamespace(t, n, "dec")
	put := &cairnv1.PutKeyRequest{Namespace: "dec", Object: "o", Key: "k", Content: &cairnv1.PutKeyRequest_BinaryValue{BinaryValue: []byte("v")}}
	batch := &cairnv1.BatchWriteRequest{Namespace: "dec", Object: "o", Puts: []*cairnv1.KeyPut{{Key: "k", Content: &cairnv1.KeyPut_BinaryValue{BinaryValue: []byte("v")}}}}
	for _, tt := range []struct {
		name, method string
		req          []byte
		want         string
	}{
		{"a key that is not UTF-8", "/cairn.v1.ObjectService/PutKey", withBadString(t, put, "key"), "key is not valid UTF-8"},
		{"a namespace that is not UTF-8", "/cairn.v1.ObjectService/PutKey", withBadString(t, put, "namespace"), "namespace is not valid UTF-8"},
		{"a nested key that is not UTF-8", "/cairn.v1.ObjectService/BatchWrite", withBadString(t, batch, "puts", "key"), "puts.key is not valid UTF-8"},
		{"bytes that are not the message", "/cairn.v1.ObjectService/PutKey", []byte{0x1a, 0x7f, 'k'}, "the request is not a valid cairn.v1.PutKeyRequest"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var resp []byte
			err := n.conn.Invoke(testCtx(t), tt.method, &tt.req, &resp, grpc.ForceCodec(rawCodec{}))
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Fatalf("%s: %v, want InvalidArgument naming %q", tt.method, err, tt.want)
			}
		})
	}
	if _, err := n.objects().GetKey(testCtx(t), &cairnv1.GetKeyRequest{Namespace: "dec", Object: "o", Key: "k"}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetKey after the refused writes: %v, want NotFound", err)
	}

	// A stream's request too.
	req := withBadString(t, &cairnv1.WatchRequest{Namespace: "dec", Object: "o"}, "object")
	desc := &grpc.StreamDesc{ServerStreams: true}
	s, err := n.conn.NewStream(testCtx(t), desc, "/cairn.v1.WatchService/Watch", grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(&req); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var msg []byte
	for err == nil {
		err = s.RecvMsg(&msg)
	}
	if errors.Is(err, io.EOF) || status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "object is not valid UTF-8") {
		t.Fatalf("Watch with an object name that is not UTF-8: %v, want InvalidArgument naming object", err)
	}

	// A request that carries the marker's field without this process's
	// secret is an ordinary request with an unknown field.
	forged := protowire.AppendBytes(protowire.AppendTag(nil, undecodableField, protowire.BytesType), []byte("key is not valid UTF-8"))
	valid, err := proto.Marshal(put)
	if err != nil {
		t.Fatal(err)
	}
	req = append(valid, forged...)
	var resp []byte
	if err := n.conn.Invoke(testCtx(t), "/cairn.v1.ObjectService/PutKey", &req, &resp, grpc.ForceCodec(rawCodec{})); err != nil {
		t.Fatalf("PutKey with an unknown field: %v", err)
	}
}
