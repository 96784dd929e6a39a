package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

const httpReadHeaderTimeout = 10 * time.Second

// httpHandler builds the REST side: health probes, metrics, the OpenAPI
// document, and the grpc-gateway, which calls this node's own API: unary
// calls in process (inprocConn), streams over an in-memory gRPC listener.
func (s *Server) httpHandler(ctx context.Context) (http.Handler, error) {
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{},
		}),
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptSlash),
		runtime.WithErrorHandler(httpError),
	)
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(s.dialGateway),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponseBytes), grpc.MaxCallSendMsgSize(s.cfg.MaxRequestBytes+(1<<20))),
	}
	// the in-memory listener (listeners.go), whatever the gRPC port's TLS
	conn, err := grpc.NewClient(gatewayTarget, opts...)
	if err != nil {
		return nil, fmt.Errorf("server: dial own gRPC API: %w", err)
	}
	s.selfConn = conn
	api := &inprocConn{next: conn, methods: s.grpc.unary, chain: chainUnary(s.unaryInterceptors()), maxRecv: s.cfg.MaxRequestBytes + (1 << 20), maxSend: maxResponseBytes}
	for _, err := range []error{
		cairnv1.RegisterNamespaceServiceHandlerClient(ctx, gw, cairnv1.NewNamespaceServiceClient(api)),
		cairnv1.RegisterObjectServiceHandlerClient(ctx, gw, cairnv1.NewObjectServiceClient(api)),
		cairnv1.RegisterClusterServiceHandlerClient(ctx, gw, cairnv1.NewClusterServiceClient(api)),
		cairnv1.RegisterWatchServiceHandlerClient(ctx, gw, cairnv1.NewWatchServiceClient(api)),
		cairnv1.RegisterAlarmServiceHandlerClient(ctx, gw, cairnv1.NewAlarmServiceClient(api)),
	} {
		if err != nil {
			return nil, fmt.Errorf("server: gateway: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /openapi.json", serveOpenAPI)
	rest := bearerChallenges(s.limitBody(keyPathFix(gw)))
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics" || r.URL.Path == "/openapi.json":
			mux.ServeHTTP(w, r)
		case isSSE(r):
			s.serveSSE(w, r)
		case r.Method == http.MethodGet && r.URL.Path == "/v1/cluster/backup":
			rest.ServeHTTP(&rawBody{ResponseWriter: w}, r)
		default:
			rest.ServeHTTP(w, r)
		}
	})
	return s.cors(root), nil
}

// rawBody makes the gateway's stream of HttpBody messages (Backup) the raw
// bytes they carry: the gateway writes a "\n" delimiter after each
// message, which rawBody drops. A Backup message is never exactly "\n"
// (every message but the last is backupChunk bytes, and the last holds
// the 32-byte trailer). A successful stream is labelled
// application/octet-stream; an error (an explicit status) keeps the
// gateway's JSON.
type rawBody struct {
	http.ResponseWriter
	started bool
}

func (w *rawBody) WriteHeader(code int) {
	w.started = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *rawBody) Write(p []byte) (int, error) {
	if !w.started {
		w.started = true
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	if len(p) == 1 && p[0] == '\n' {
		return 1, nil
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController flush the real writer.
func (w *rawBody) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// readyz answers 200 when this node is serving (ready), 503 otherwise,
// saying why.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if msg, ok := s.ready(r.Context()); !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintln(w, "not ready: "+msg)
		return
	}
	st := s.node.Status()
	_, _ = fmt.Fprintf(w, "ready: leader %s, applied index %d\n", st.LeaderID, st.AppliedIndex)
}

// limitBody bounds request bodies: JSON carries values base64-encoded or
// escaped, so the bound is twice the write limit plus room for the rest.
func (s *Server) limitBody(next http.Handler) http.Handler {
	limit := int64(2*s.cfg.MaxRequestBytes + (1 << 20))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			_, _ = fmt.Fprintf(w, `{"code":3,"message":"request body is %d bytes, limit is %d","details":[]}`+"\n", r.ContentLength, limit)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
}

// keyPathFix makes a percent-encoded slash inside a key mean the same as
// a literal one. The gateway matches {key=**} on raw segments and would
// hand the handler "%2F" verbatim; rewriting %2F to "/" after /keys/ gives
// the handler exactly the key the client encoded, while %252F still
// decodes to a literal "%2F".
func keyPathFix(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := r.URL.EscapedPath()
		segs := strings.SplitN(raw, "/", 8)
		// "", v1, namespaces, {ns}, objects, {object}, keys, {key...}
		if len(segs) == 8 && segs[1] == "v1" && segs[2] == "namespaces" && segs[4] == "objects" && segs[6] == "keys" {
			key := segs[7]
			if strings.Contains(key, "%2F") || strings.Contains(key, "%2f") {
				key = strings.NewReplacer("%2F", "/", "%2f", "/").Replace(key)
				fixed := strings.Join(append(segs[:7:7], key), "/")
				if p, err := url.PathUnescape(fixed); err == nil {
					u := *r.URL
					u.Path, u.RawPath = p, fixed
					r2 := r.Clone(r.Context())
					r2.URL = &u
					r = r2
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// httpError is the gateway's error handler: the default mapping of gRPC
// codes to HTTP statuses, except that a conditional write whose expected
// revision did not hold answers 412 Precondition Failed, and a status with
// a retry hint (overload) sets Retry-After.
func httpError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := status.FromError(err); ok {
		if st.Code() == codes.FailedPrecondition && hasReason(st, ReasonRevisionMismatch) {
			w = statusWriter{ResponseWriter: w, status: http.StatusPreconditionFailed}
		}
		retryAfter(w, st)
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// bearerChallenges answers every 401 with the Bearer challenge of RFC
// 6750 (the gateway would put the error message in WWW-Authenticate for
// unary calls, and nothing for streams).
func bearerChallenges(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(bearerChallenge{w}, r)
	})
}

// bearerChallenge sets the challenge when a 401 is written; it flushes
// like the writer it wraps, for streaming responses.
type bearerChallenge struct{ http.ResponseWriter }

func (b bearerChallenge) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		b.Header().Set("WWW-Authenticate", `Bearer realm="cairn"`)
	}
	b.ResponseWriter.WriteHeader(code)
}

func (b bearerChallenge) Flush() {
	if f, ok := b.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the writer underneath.
func (b bearerChallenge) Unwrap() http.ResponseWriter { return b.ResponseWriter }

// statusWriter replaces the status a handler writes.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s statusWriter) WriteHeader(int) { s.ResponseWriter.WriteHeader(s.status) }

// httpStatusFromCode maps a status to its HTTP status as the gateway does,
// with a revision mismatch as 412.
func httpStatusFromCode(st *status.Status) int {
	if st.Code() == codes.FailedPrecondition && hasReason(st, ReasonRevisionMismatch) {
		return http.StatusPreconditionFailed
	}
	return runtime.HTTPStatusFromCode(st.Code())
}
