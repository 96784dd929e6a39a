package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// requestCodec is the API servers' codec: protobuf, except that a request
// it cannot decode (a string that is not UTF-8, bytes that are not the
// message) is answered InvalidArgument, naming the field where it can.
// grpc-go answers a codec's error with Internal, which tells the client
// the server failed. The codec cannot choose the code itself, so it
// decodes such a request as an empty message that carries the answer in
// a marker (an unknown field that only this process can write), and the
// first interceptor after the metrics answers with it before anything
// else sees the request (checkDecodedUnary, checkDecodedStream). The
// marker lives and dies with the message: a call that ends before an
// interceptor looks (a client that cancels while it sends, a second
// message where one was due) leaves nothing behind.
type requestCodec struct {
	encoding.CodecV2
	secret [16]byte // begins every marker
}

// undecodableField is the unknown field that marks a request the codec
// could not decode: the highest field number protobuf allows.
const undecodableField = protowire.MaxValidNumber

func newRequestCodec() requestCodec {
	c := requestCodec{CodecV2: encoding.GetCodecV2(protocodec.Name)}
	if _, err := rand.Read(c.secret[:]); err != nil {
		panic(fmt.Sprintf("server: no randomness: %v", err))
	}
	return c
}

// Unmarshal implements encoding.CodecV2.
func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok {
		return err
	}
	answer := invalidRequest(m.ProtoReflect().Descriptor(), data.Materialize(), err)
	proto.Reset(m)
	marker := protowire.AppendTag(nil, undecodableField, protowire.BytesType)
	m.ProtoReflect().SetUnknown(protowire.AppendBytes(marker, append(c.secret[:], answer...)))
	return nil
}

// undecodable returns the answer to req when the codec could not decode
// it, and nil when it could.
func (c requestCodec) undecodable(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	u := m.ProtoReflect().GetUnknown()
	if len(u) == 0 {
		return nil
	}
	num, typ, n := protowire.ConsumeTag(u)
	if num != undecodableField || typ != protowire.BytesType {
		return nil
	}
	v, l := protowire.ConsumeBytes(u[n:])
	if l < 0 || n+l != len(u) || !bytes.HasPrefix(v, c.secret[:]) {
		return nil
	}
	return status.Error(codes.InvalidArgument, string(v[len(c.secret):]))
}

// checkDecodedUnary answers a unary call whose request could not be
// decoded with the reason.
func (c requestCodec) checkDecodedUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := c.undecodable(req); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// checkDecodedStream does the same for every message a streaming call
// receives.
func (c requestCodec) checkDecodedStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, decodeCheckedStream{ServerStream: ss, codec: c})
}

type decodeCheckedStream struct {
	grpc.ServerStream
	codec requestCodec
}

func (s decodeCheckedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.codec.undecodable(m)
}

// invalidRequest is the message of the answer to a request of type md,
// encoded as b, that protobuf refused with err.
func invalidRequest(md protoreflect.MessageDescriptor, b []byte, err error) string {
	if field := invalidUTF8Field(md, b); field != "" {
		return field + " is not valid UTF-8"
	}
	return fmt.Sprintf("the request is not a valid %s: %v", md.FullName(), err)
}

// maxFieldDepth bounds how deep invalidUTF8Field follows nested messages:
// protobuf's own limit, past which it refuses the message for its depth.
const maxFieldDepth = 10000

// invalidUTF8Field returns the path (field names joined by dots) of the
// first string field in b, an encoded message of type md, that is not
// valid UTF-8, or "" when it finds none. It reads b in the order protobuf
// decodes it, and stops where protobuf would fail for another reason (a
// malformed field, also inside a nested message, or one too deep), so
// that it names a field only when that field is why protobuf refused b.
func invalidUTF8Field(md protoreflect.MessageDescriptor, b []byte) string {
	field, _ := findInvalidUTF8(md, b, 0)
	return field
}

// findInvalidUTF8 is invalidUTF8Field; malformed reports that it stopped
// before the end of b, at something protobuf refuses.
func findInvalidUTF8(md protoreflect.MessageDescriptor, b []byte, depth int) (field string, malformed bool) {
	if depth > maxFieldDepth {
		return "", true
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber { // protobuf refuses both
			return "", true
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return "", true
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", true
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		switch {
		case fd == nil:
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(v):
			return string(fd.Name()), false
		case fd.Kind() == protoreflect.MessageKind:
			sub, bad := findInvalidUTF8(fd.Message(), v, depth+1)
			if sub != "" {
				return string(fd.Name()) + "." + sub, false
			}
			if bad {
				return "", true
			}
		}
	}
	return "", false
}
