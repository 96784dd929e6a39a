package server

import (
	"context"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// inprocConn is the REST gateway's connection to this node's own API. A
// unary call runs the API's interceptor chain and handler in process, as
// the gateway gRPC server would, without the HTTP/2 framing and the
// protobuf encoding and decoding, both ways, of a call over the in-memory
// listener: those were a quarter of a node's CPU under REST reads. What
// that connection checked, Invoke checks: the deadline, the size limits
// both ways, strings that are not UTF-8. Streams (watch, backup) and any
// method not registered here go over that listener (next). Not carried
// over: the gRPC response's own metadata, which the gateway sent as
// Grpc-Metadata-Content-Type: application/grpc, and the 64 KiB bound on
// the metadata, which the HTTP server's header limit makes moot.
type inprocConn struct {
	next    grpc.ClientConnInterface
	methods map[string]inprocMethod // by full method name, "/cairn.v1.ObjectService/GetKey"
	chain   grpc.UnaryServerInterceptor
	maxRecv int // the gateway server's MaxRecvMsgSize
	maxSend int // the gateway server's MaxSendMsgSize
}

type inprocMethod struct {
	impl    any
	handler grpc.MethodHandler
}

// inprocMethods collects the unary methods of the services registered on
// the API's gRPC servers (grpcServers.RegisterService).
type inprocMethods map[string]inprocMethod

func (m inprocMethods) add(desc *grpc.ServiceDesc, impl any) {
	for _, md := range desc.Methods {
		m["/"+desc.ServiceName+"/"+md.MethodName] = inprocMethod{impl: impl, handler: md.Handler}
	}
}

// Invoke implements grpc.ClientConnInterface.
func (c *inprocConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	m, ok := c.methods[method]
	if !ok {
		return c.next.Invoke(ctx, method, args, reply, opts...)
	}
	in, ok := args.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "in-process call %s: request %T is not a protobuf message", method, args)
	}
	// What the gRPC connection checked and refused before sending.
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	if n := proto.Size(in); n > c.maxRecv {
		return status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", n, c.maxRecv)
	}
	if err := checkUTF8(in.ProtoReflect(), ""); err != nil {
		return err
	}
	// The handler sees what it would over the wire: the gateway's outgoing
	// metadata (the caller's authorization, forwarded headers) as incoming,
	// and nothing outgoing, so a call it forwards to the leader carries
	// only what the forwarding adds.
	md, _ := metadata.FromOutgoingContext(ctx)
	hctx := metadata.NewOutgoingContext(metadata.NewIncomingContext(ctx, md), nil)
	dec := func(v any) error {
		dst, ok := v.(proto.Message)
		if !ok {
			return status.Errorf(codes.Internal, "in-process call %s: request %T is not a protobuf message", method, v)
		}
		proto.Merge(dst, in)
		return nil
	}
	out, err := m.handler(m.impl, hctx, dec, c.chain)
	if err != nil {
		// As a gRPC client: a call whose deadline passed or that was
		// cancelled ends with that, whatever the handler said; otherwise,
		// as the gRPC server sends it: a status as it is, a context's end
		// as its code, anything else Unknown.
		if cerr := ctx.Err(); cerr != nil {
			return status.FromContextError(cerr).Err()
		}
		if st, ok := status.FromError(err); ok {
			return st.Err()
		}
		return status.FromContextError(err).Err()
	}
	res, ok := out.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "in-process call %s: response %T is not a protobuf message", method, out)
	}
	if n := proto.Size(res); n > c.maxSend {
		return status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", n, c.maxSend)
	}
	dst, ok := reply.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "in-process call %s: reply %T is not a protobuf message", method, reply)
	}
	proto.Merge(dst, res)
	return nil
}

// checkUTF8 refuses a request with a string field that is not valid
// UTF-8, which protobuf's encoding refuses (the gateway copies path and
// query parameters into string fields as they come): InvalidArgument,
// naming the field.
func checkUTF8(m protoreflect.Message, path string) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		err = checkUTF8Value(fd, v, path+string(fd.Name()))
		return err == nil
	})
	return err
}

func checkUTF8Value(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) error {
	switch {
	case fd.IsList():
		l := v.List()
		for i := range l.Len() {
			if err := checkUTF8Single(fd, l.Get(i), path); err != nil {
				return err
			}
		}
	case fd.IsMap():
		var err error
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			// A map's entries are messages of a key and a value, as the
			// gRPC codec's search names them (codec.go).
			if err = checkUTF8Single(fd.MapKey(), k.Value(), path+".key"); err == nil {
				err = checkUTF8Single(fd.MapValue(), mv, path+".value")
			}
			return err == nil
		})
		return err
	default:
		return checkUTF8Single(fd, v, path)
	}
	return nil
}

func checkUTF8Single(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) error {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if !utf8.ValidString(v.String()) {
			return status.Errorf(codes.InvalidArgument, "%s is not valid UTF-8", path)
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return checkUTF8(v.Message(), path+".")
	}
	return nil
}

// NewStream implements grpc.ClientConnInterface: streams go over the
// in-memory listener.
func (c *inprocConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.next.NewStream(ctx, desc, method, opts...)
}

// chainUnary makes one interceptor of ics, run in order, the first
// outermost (as grpc.ChainUnaryInterceptor does on a server).
func chainUnary(ics []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		var next func(i int) grpc.UnaryHandler
		next = func(i int) grpc.UnaryHandler {
			if i == len(ics) {
				return h
			}
			return func(ctx context.Context, req any) (any, error) { return ics[i](ctx, req, info, next(i+1)) }
		}
		return next(0)(ctx, req)
	}
}
