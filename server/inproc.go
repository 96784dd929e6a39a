package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// inprocConn is the REST gateway's connection to this node's own API. A
// unary call runs the API's interceptor chain and handler in process, as
// the gateway gRPC server would, without the HTTP/2 framing and the
// protobuf encoding and decoding, both ways, of a call over the in-memory
// listener: those were a quarter of a node's CPU under REST reads. Streams
// (watch, backup) and any method not registered here go over that
// listener (next).
type inprocConn struct {
	next    grpc.ClientConnInterface
	methods map[string]inprocMethod // by full method name, "/cairn.v1.ObjectService/GetKey"
	chain   grpc.UnaryServerInterceptor
	maxRecv int // the gateway server's MaxRecvMsgSize
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
	if n := proto.Size(in); n > c.maxRecv {
		// What the gateway server answered a message over its limit.
		return status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, c.maxRecv)
	}
	// The handler sees what it would over the wire: the gateway's outgoing
	// metadata (the caller's authorization, forwarded headers) as incoming,
	// and nothing outgoing, so a call it forwards to the leader carries
	// only what the forwarding adds.
	md, _ := metadata.FromOutgoingContext(ctx)
	ctx = metadata.NewOutgoingContext(metadata.NewIncomingContext(ctx, md), nil)
	dec := func(v any) error {
		dst, ok := v.(proto.Message)
		if !ok {
			return status.Errorf(codes.Internal, "in-process call %s: request %T is not a protobuf message", method, v)
		}
		proto.Merge(dst, in)
		return nil
	}
	out, err := m.handler(m.impl, ctx, dec, c.chain)
	if err != nil {
		// As the gRPC server: a status as it is, a context's end as its
		// code, anything else Unknown.
		if st, ok := status.FromError(err); ok {
			return st.Err()
		}
		return status.FromContextError(err).Err()
	}
	res, ok := out.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "in-process call %s: response %T is not a protobuf message", method, out)
	}
	dst, ok := reply.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "in-process call %s: reply %T is not a protobuf message", method, reply)
	}
	proto.Merge(dst, res)
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
