package server

import (
	"context"
	"sync"
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

// requestCodec is the public gRPC server's codec: protobuf, except that a
// request it cannot decode (a string that is not UTF-8, bytes that are not
// the message) is answered InvalidArgument, naming the field where it can.
// grpc-go answers a codec's error with Internal, which tells the client
// the server failed. The codec cannot choose the code itself, so it
// decodes the message as empty, notes why in undecodable, and the first
// interceptor after the metrics answers with it before anything else sees
// the request (checkDecodedUnary, checkDecodedStream).
type requestCodec struct {
	encoding.CodecV2
	undecodable *sync.Map // proto.Message -> error, until an interceptor takes it
}

func newRequestCodec() requestCodec {
	return requestCodec{CodecV2: encoding.GetCodecV2(protocodec.Name), undecodable: &sync.Map{}}
}

// Unmarshal implements encoding.CodecV2.
func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok {
		return err
	}
	c.undecodable.Store(m, invalidRequest(m.ProtoReflect().Descriptor(), data.Materialize(), err))
	proto.Reset(m)
	return nil
}

// take returns, and forgets, why req could not be decoded; nil when it was.
func (c requestCodec) take(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	if err, found := c.undecodable.LoadAndDelete(m); found {
		return err.(error)
	}
	return nil
}

// checkDecodedUnary answers a unary call whose request could not be
// decoded with the reason.
func (c requestCodec) checkDecodedUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := c.take(req); err != nil {
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
	return s.codec.take(m)
}

// invalidRequest is the answer to a request of type md, encoded as b, that
// protobuf refused with err.
func invalidRequest(md protoreflect.MessageDescriptor, b []byte, err error) error {
	if field := invalidUTF8Field(md, b, 0); field != "" {
		return status.Errorf(codes.InvalidArgument, "%s is not valid UTF-8", field)
	}
	return status.Errorf(codes.InvalidArgument, "the request is not a valid %s: %v", md.FullName(), err)
}

// maxFieldDepth bounds how deep invalidUTF8Field follows nested messages
// (protobuf's own decoder stops at 10,000).
const maxFieldDepth = 100

// invalidUTF8Field returns the path (field names joined by dots) of the
// first string field in b, an encoded message of type md, that is not
// valid UTF-8, or "" when it finds none.
func invalidUTF8Field(md protoreflect.MessageDescriptor, b []byte, depth int) string {
	if depth > maxFieldDepth {
		return ""
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return ""
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		switch {
		case fd == nil:
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(v):
			return string(fd.Name())
		case fd.Kind() == protoreflect.MessageKind:
			if sub := invalidUTF8Field(fd.Message(), v, depth+1); sub != "" {
				return string(fd.Name()) + "." + sub
			}
		}
	}
	return ""
}
