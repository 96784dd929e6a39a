package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cairndb/cairn/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Authentication and authorization of API calls.
//
// With Config.Auth enabled, every call on the public gRPC port and every
// REST route (the gateway passes the Authorization header on as the
// "authorization" metadata) must carry a bearer token the verifier
// accepts (else Unauthenticated, HTTP 401), whose role and namespaces
// allow the method as the permissions table says (else PermissionDenied,
// HTTP 403). Open without a token: the standard probe services
// (openMethods) on the gRPC port, and /healthz, /readyz, /metrics and
// /openapi.json over REST.
//
// A follower checks a call before it forwards it, and forwards it with
// the caller's token: the leader verifies the token again and acts as
// the caller. The peer API is served only on the Raft port, so a call
// reaches it only from a process that passed the cluster's mutual TLS
// (when configured); a peer call without a token is the node's own (such
// as publishing its addresses) and is trusted as far as that transport.

// callerKey keys the verified caller in a call's context.
type callerKey struct{}

// Caller returns the verified identity behind the call ctx belongs to, or
// nil when authentication is off or the call is a node's own.
func Caller(ctx context.Context) *auth.Identity {
	id, _ := ctx.Value(callerKey{}).(*auth.Identity)
	return id
}

func withCaller(ctx context.Context, id *auth.Identity) context.Context {
	return context.WithValue(ctx, callerKey{}, id)
}

// authUnary authenticates and authorizes a unary call on the public API.
func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if s.verifier == nil || openMethods[info.FullMethod] {
		return h(ctx, req)
	}
	id, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if err := authorize(id, info.FullMethod, req); err != nil {
		return nil, err
	}
	return h(withCaller(ctx, id), req)
}

// authStream authenticates a streaming call at once and authorizes it
// when the handler reads the request (which names the namespace).
func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if s.verifier == nil || openMethods[info.FullMethod] {
		return h(srv, ss)
	}
	id, err := s.authenticate(ss.Context())
	if err != nil {
		return err
	}
	if err := authorize(id, info.FullMethod, nil); err != nil {
		return err
	}
	return h(srv, &authorizedStream{ServerStream: ss, ctx: withCaller(ss.Context(), id), id: id, method: info.FullMethod})
}

// authorizedStream checks each request a streaming handler receives
// against the caller's namespaces.
type authorizedStream struct {
	grpc.ServerStream
	ctx    context.Context
	id     *auth.Identity
	method string
}

func (a *authorizedStream) Context() context.Context { return a.ctx }

func (a *authorizedStream) RecvMsg(m any) error {
	if err := a.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return authorize(a.id, a.method, m)
}

// authenticate verifies the call's bearer token.
func (s *Server) authenticate(ctx context.Context) (*auth.Identity, error) {
	token, err := bearerToken(ctx)
	if err == nil {
		var id *auth.Identity
		if id, err = s.verifier.Verify(token); err == nil {
			return id, nil
		}
	}
	return nil, unauthenticated(err)
}

// authorize checks id against method's permission; req, when not nil, is
// the request whose namespace a scoped method checks.
func authorize(id *auth.Identity, method string, req any) error {
	p, ok := permissions[method]
	if !ok {
		return status.Errorf(codes.PermissionDenied, "permission denied: %s is not open to any role", method)
	}
	if !id.Can(p.role) {
		return status.Errorf(codes.PermissionDenied, "permission denied: %s needs role %s; the token grants %s", shortMethod(method), p.role, id.Role)
	}
	if p.scoped && req != nil {
		if ns := requestNamespace(req); !id.AllowsNamespace(ns) {
			return status.Errorf(codes.PermissionDenied, "permission denied: the token does not grant namespace %q", ns)
		}
	}
	return nil
}

// bearerToken returns the token of the call's first "authorization"
// metadata value, which must use the Bearer scheme.
func bearerToken(ctx context.Context) (string, error) {
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) == 0 || vals[0] == "" {
		return "", auth.ErrNoToken
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: the authorization header must be \"Bearer <token>\"", auth.ErrMalformed)
	}
	return strings.TrimSpace(token), nil
}

// unauthenticated is the status of a refused token. Its message says what
// is wrong with the token (expired, bad signature…) and nothing of the
// keys.
func unauthenticated(err error) error {
	reason := strings.TrimPrefix(err.Error(), "auth: ")
	if errors.Is(err, auth.ErrNoToken) {
		reason = "no bearer token (send \"Authorization: Bearer <token>\")"
	}
	return status.Error(codes.Unauthenticated, "unauthenticated: "+reason)
}

// shortMethod turns "/cairn.v1.ObjectService/PutKey" into
// "ObjectService.PutKey".
func shortMethod(full string) string {
	full = strings.TrimPrefix(full, "/")
	svc, m, ok := strings.Cut(full, "/")
	if !ok {
		return full
	}
	if i := strings.LastIndex(svc, "."); i >= 0 {
		svc = svc[i+1:]
	}
	return svc + "." + m
}

// peerAuthUnary checks calls on the peer API (the Raft port). A call that
// carries a token is a forwarded caller's: the token is verified again,
// public methods (cluster operations) are authorized as on the public
// port, and the handler acts as that caller. A call without a token is
// the forwarding node's own.
func (s *Server) peerAuthUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if s.verifier == nil {
		return h(ctx, req)
	}
	if _, err := bearerToken(ctx); errors.Is(err, auth.ErrNoToken) {
		return h(ctx, req)
	}
	id, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if _, public := permissions[info.FullMethod]; public {
		if err := authorize(id, info.FullMethod, req); err != nil {
			return nil, err
		}
	}
	return h(withCaller(ctx, id), req)
}

// peerAuthStream is peerAuthUnary for streaming calls (a forwarded
// Restore): the peer's mutual TLS admits the call, and a forwarded token
// is verified and authorized here.
func (s *Server) peerAuthStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if s.verifier == nil {
		return h(srv, ss)
	}
	if _, err := bearerToken(ss.Context()); errors.Is(err, auth.ErrNoToken) {
		return h(srv, ss)
	}
	id, err := s.authenticate(ss.Context())
	if err != nil {
		return err
	}
	if _, public := permissions[info.FullMethod]; public {
		if err := authorize(id, info.FullMethod, nil); err != nil {
			return err
		}
	}
	return h(srv, &authorizedStream{ServerStream: ss, ctx: withCaller(ss.Context(), id), id: id, method: info.FullMethod})
}

// forwardCaller is the client interceptor of calls to other nodes' peer
// API: it sends the caller's token along, so the leader acts as the
// caller.
func forwardCaller(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(withForwardedToken(ctx), method, req, reply, cc, opts...)
}

func forwardCallerStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(withForwardedToken(ctx), desc, cc, method, opts...)
}

func withForwardedToken(ctx context.Context) context.Context {
	id := Caller(ctx)
	if id == nil || id.Token == "" {
		return ctx
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get("authorization")) > 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+id.Token)
}

// reloadKeysEvery re-reads the verifier's key files every interval until
// ctx ends, logging failures (the keys in use then stay).
func (s *Server) reloadKeysEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.verifier.Reload(); err != nil {
				s.log.Error("reloading token keys failed; the keys in use stay", "err", err)
			}
		}
	}
}

// ReloadAuthKeys re-reads the token verification keys (the public key
// file and the JWKS file). On error the keys in use stay. A no-op when
// authentication is off.
func (s *Server) ReloadAuthKeys() error {
	if s.verifier == nil {
		return nil
	}
	return s.verifier.Reload()
}
