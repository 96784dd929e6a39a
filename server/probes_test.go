package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
)

// reflectionClient is a grpc.reflection.v1 client over one stream.
type reflectionClient struct {
	t      testing.TB
	stream reflectionv1.ServerReflection_ServerReflectionInfoClient
}

func newReflectionClient(t testing.TB, ctx context.Context, conn *grpc.ClientConn) *reflectionClient {
	t.Helper()
	stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatalf("ServerReflectionInfo: %v", err)
	}
	return &reflectionClient{t: t, stream: stream}
}

func (r *reflectionClient) ask(req *reflectionv1.ServerReflectionRequest) *reflectionv1.ServerReflectionResponse {
	r.t.Helper()
	if err := r.stream.Send(req); err != nil {
		r.t.Fatalf("reflection Send: %v", err)
	}
	resp, err := r.stream.Recv()
	if err != nil {
		r.t.Fatalf("reflection Recv: %v", err)
	}
	return resp
}

// services lists the services the server reports.
func (r *reflectionClient) services() []string {
	r.t.Helper()
	resp := r.ask(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}})
	var out []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		out = append(out, s.Name)
	}
	return out
}

// files asks for the files of req and returns them, or the error code the
// server answers.
func (r *reflectionClient) files(req *reflectionv1.ServerReflectionRequest) ([]*descriptorpb.FileDescriptorProto, codes.Code) {
	r.t.Helper()
	resp := r.ask(req)
	if e := resp.GetErrorResponse(); e != nil {
		return nil, codes.Code(e.ErrorCode)
	}
	var fds []*descriptorpb.FileDescriptorProto
	for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(b, fd); err != nil {
			r.t.Fatalf("reflection answered a file that does not parse: %v", err)
		}
		fds = append(fds, fd)
	}
	return fds, codes.OK
}

func symbolRequest(name string) *reflectionv1.ServerReflectionRequest {
	return &reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: name}}
}

// TestProbeServicesWithoutToken: on a node with authentication on, the
// gRPC health service and server reflection answer without a token while
// the API refuses such calls; reflection lists the API and the probe
// services, describes the public schema completely (the files it sends
// build into a descriptor set in which PutKey resolves) and nothing else
// (the peer API and the Raft command format are not found); every method
// the public port serves is either in the permission table or an open
// probe method, never both.
func TestProbeServicesWithoutToken(t *testing.T) {
	c := mustStartCluster(t, 1, clusterOptions{Configure: func(_ string, cfg *NodeConfig) { cfg.Server.Auth = testAuthConfig() }})
	n := c.leader(t)

	for svc, info := range n.Server.grpc.public.GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			_, gated := permissions[full]
			if gated == openMethods[full] {
				t.Errorf("%s: in the permissions table %v, open %v; it must be in exactly one (server/permissions.go)", full, gated, openMethods[full])
			}
		}
	}

	ctx := testCtx(t) // no token
	if _, err := n.namespaces().ListNamespaces(ctx, &cairnv1.ListNamespacesRequest{}); err == nil {
		t.Fatal("ListNamespaces without a token succeeded")
	} else {
		wantCode(t, err, codes.Unauthenticated)
	}
	hc := healthpb.NewHealthClient(n.conn)
	waitFor(t, waitLong, "health Check without a token to report SERVING", func() bool {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING
	})
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "cairn.v1.ObjectService"})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health of cairn.v1.ObjectService: %v, %v", resp, err)
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"}); status.Code(err) != codes.NotFound {
		t.Fatalf("health of an unknown service: %v, want NotFound", err)
	}

	rc := newReflectionClient(t, ctx, n.conn)
	got := rc.services()
	want := []string{
		"cairn.v1.AlarmService", "cairn.v1.ClusterService", "cairn.v1.NamespaceService", "cairn.v1.ObjectService", "cairn.v1.WatchService",
		"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("reflection lists %v, want %v", got, want)
	}
	fds, code := rc.files(symbolRequest("cairn.v1.ObjectService"))
	if code != codes.OK {
		t.Fatalf("file containing cairn.v1.ObjectService: %v", code)
	}
	files, err := protodesc.NewFiles(&descriptorpb.FileDescriptorSet{File: fds})
	if err != nil {
		t.Fatalf("the files reflection sent do not build (a dependency missing?): %v", err)
	}
	d, err := files.FindDescriptorByName("cairn.v1.ObjectService.PutKey")
	if err != nil {
		t.Fatalf("PutKey in the reflected files: %v", err)
	}
	t.Logf("reflection sent %d files; PutKey is %v", len(fds), d.FullName())
	for _, name := range []string{"cairn.peer.v1.PeerService", "cairn.raftcmd.v1.Command", "no.such.Symbol"} {
		if _, code := rc.files(symbolRequest(name)); code != codes.NotFound {
			t.Errorf("reflection of %s: code %v, want NotFound", name, code)
		}
	}
	for _, path := range []string{"cairn/peer/v1/peer.proto", "cairn/raftcmd/v1/command.proto"} {
		req := &reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileByFilename{FileByFilename: path}}
		if _, code := rc.files(req); code != codes.NotFound {
			t.Errorf("reflection of file %s: code %v, want NotFound", path, code)
		}
	}
	req := &reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileByFilename{FileByFilename: "cairn/v1/object.proto"}}
	if _, code := rc.files(req); code != codes.OK {
		t.Errorf("reflection of file cairn/v1/object.proto: code %v", code)
	}
}

// watchHealth streams node n's overall health status into a channel.
func watchHealth(t testing.TB, ctx context.Context, conn *grpc.ClientConn) <-chan healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health Watch: %v", err)
	}
	ch := make(chan healthpb.HealthCheckResponse_ServingStatus, 16)
	go func() {
		defer close(ch)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			ch <- resp.Status
		}
	}()
	return ch
}

// awaitStatus reads ch until it yields want, failing the test if the
// stream ends or timeout passes first.
func awaitStatus(t testing.TB, ch <-chan healthpb.HealthCheckResponse_ServingStatus, want healthpb.HealthCheckResponse_ServingStatus, timeout time.Duration, what string) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case st, ok := <-ch:
			if !ok {
				t.Fatalf("health Watch ended waiting for %s", what)
			}
			if st == want {
				return
			}
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
	}
}

// TestHealthFollowsQuorum: the health service reports SERVING on every
// node of a healthy 3-node cluster; on the leader, once the other two
// stop, Watch reports NOT_SERVING (it steps down when its lease runs out
// without a quorum), as do Check and /readyz; when the two return, Watch
// reports SERVING again.
func TestHealthFollowsQuorum(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, n := range c.running() {
		awaitStatus(t, watchHealth(t, ctx, n.conn), healthpb.HealthCheckResponse_SERVING, waitLong, n.id+" to report SERVING")
	}
	l := c.leader(t)
	watch := watchHealth(t, ctx, l.conn)
	awaitStatus(t, watch, healthpb.HealthCheckResponse_SERVING, waitLong, l.id+" (leader) to report SERVING")

	type addrs struct{ raft, grpc, http string }
	saved := map[*testNode]addrs{}
	for _, f := range c.followers(t) {
		saved[f] = addrs{f.Node.RaftAddr(), f.Server.GRPCAddr(), f.Server.HTTPAddr()}
		f.stop()
	}
	awaitStatus(t, watch, healthpb.HealthCheckResponse_NOT_SERVING, waitLong, l.id+" to report NOT_SERVING without a quorum")
	resp, err := healthpb.NewHealthClient(l.conn).Check(testCtx(t), &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Check on %s without a quorum: %v, %v", l.id, resp, err)
	}
	if code := httpGetStatus(t, "http://"+l.Server.HTTPAddr()+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz on %s without a quorum: HTTP %d", l.id, code)
	}

	for f, a := range saved {
		c.mustRestart(t, f, a.raft, a.grpc, a.http)
	}
	awaitStatus(t, watch, healthpb.HealthCheckResponse_SERVING, waitLong, l.id+" to report SERVING with its quorum back")
	c.waitStable(t)
}

// TestShutdownEndsProbeStreams: a graceful shutdown reports NOT_SERVING to
// a health watcher and ends its stream (and an open reflection stream) at
// once, rather than holding the drain until its deadline.
func TestShutdownEndsProbeStreams(t *testing.T) {
	c := mustStartCluster(t, 1, clusterOptions{})
	n := c.leader(t)
	conn, err := grpc.NewClient(n.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := watchHealth(t, ctx, conn)
	awaitStatus(t, watch, healthpb.HealthCheckResponse_SERVING, waitLong, "SERVING")
	rc := newReflectionClient(t, ctx, conn)
	rc.services() // the reflection stream is open

	drain, stop := context.WithTimeout(context.Background(), waitLong)
	defer stop()
	n.stopped.Store(true)
	_ = n.conn.Close()
	n.Shutdown(drain)
	if drain.Err() != nil {
		t.Fatalf("the drain ran into its %s deadline: a probe stream held it", waitLong)
	}
	awaitStatus(t, watch, healthpb.HealthCheckResponse_NOT_SERVING, waitLong, "NOT_SERVING on shutdown")
	for range watch { // the stream ends
	}
	if _, err := rc.stream.Recv(); err == nil {
		t.Fatal("the reflection stream is still open after the shutdown")
	}
}

// TestOpenAPIDocument: GET /openapi.json answers, without a token, the
// embedded OpenAPI document: valid JSON listing cairn's REST paths, with
// CORS headers for a configured origin.
func TestOpenAPIDocument(t *testing.T) {
	c := mustStartCluster(t, 1, clusterOptions{Configure: func(_ string, cfg *NodeConfig) {
		cfg.Server.Auth = testAuthConfig()
		cfg.Server.CORSOrigins = []string{"http://docs.example"}
	}})
	n := c.leader(t)
	req, _ := http.NewRequest(http.MethodGet, "http://"+n.Server.HTTPAddr()+"/openapi.json", nil)
	req.Header.Set("Origin", "http://docs.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json: HTTP %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "http://docs.example" {
		t.Fatalf("GET /openapi.json from an allowed origin: Access-Control-Allow-Origin %q", got)
	}
	var doc struct {
		Swagger string                    `json:"swagger"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("/openapi.json is not JSON: %v", err)
	}
	if doc.Swagger != "2.0" {
		t.Errorf("swagger version %q, want 2.0", doc.Swagger)
	}
	for path, method := range map[string]string{
		"/v1/namespaces": "get",
		"/v1/namespaces/{namespace}/objects/{object}/keys/{key}": "put",
		"/v1/namespaces/{namespace}:txn":                         "post",
		"/v1/cluster":                                            "get",
		"/v1/namespaces/{namespace}/objects/{object}:watch":      "get",
	} {
		if _, ok := doc.Paths[path][method]; !ok {
			t.Errorf("/openapi.json has no %s %s", strings.ToUpper(method), path)
		}
	}
	t.Logf("/openapi.json: %d bytes, %d paths", len(body), len(doc.Paths))
}

// httpGetStatus returns the HTTP status of GET url.
func httpGetStatus(t testing.TB, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
