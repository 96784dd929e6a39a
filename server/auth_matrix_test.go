package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/auth"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// matrixNS is the namespace the matrix's calls name; otherNS the one the
// "other namespace" token is limited to.
const (
	matrixNS = "ns-a"
	otherNS  = "ns-b"
)

// servedRPC is one RPC a node serves on its public gRPC port.
type servedRPC struct {
	full string // "/cairn.v1.ObjectService/PutKey"
	md   protoreflect.MethodDescriptor
}

// servedRPCs returns every RPC the node's public gRPC server has
// registered, in name order.
func servedRPCs(t *testing.T, n *testNode) []servedRPC {
	t.Helper()
	var out []servedRPC
	for svc, info := range n.Server.grpc.public.GetServiceInfo() {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			t.Fatalf("service %s: %v", svc, err)
		}
		sd := d.(protoreflect.ServiceDescriptor)
		for _, m := range info.Methods {
			out = append(out, servedRPC{full: "/" + svc + "/" + m.Name, md: sd.Methods().ByName(protoreflect.Name(m.Name))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].full < out[j].full })
	if len(out) < 15 {
		t.Fatalf("the node serves only %d RPCs", len(out))
	}
	return out
}

// matrixValues fill the request fields of the same names: a namespace, an
// object and a key, and a member id that does not exist (so cluster
// operations a permitted caller makes change nothing).
var matrixValues = map[protoreflect.Name]string{
	"namespace": matrixNS, "object": "obj-1", "key": "k1", "id": "no-such-member",
}

// newRequest returns rpc's request message with the matrix values set.
func newRequest(t *testing.T, rpc servedRPC) proto.Message {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(rpc.md.Input().FullName())
	if err != nil {
		t.Fatalf("%s: request type: %v", rpc.full, err)
	}
	m := mt.New()
	fields := m.Descriptor().Fields()
	for name, v := range matrixValues {
		if fd := fields.ByName(name); fd != nil && fd.Kind() == protoreflect.StringKind && !fd.IsList() {
			m.Set(fd, protoreflect.ValueOfString(v))
		}
	}
	return m.Interface()
}

// callRPC calls rpc over conn with req and returns the call's error; a
// server stream's error is that of its first message.
func callRPC(ctx context.Context, t *testing.T, conn *grpc.ClientConn, rpc servedRPC, req proto.Message) error {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(rpc.md.Output().FullName())
	if err != nil {
		t.Fatalf("%s: response type: %v", rpc.full, err)
	}
	resp := mt.New().Interface()
	if !rpc.md.IsStreamingServer() && !rpc.md.IsStreamingClient() {
		return conn.Invoke(ctx, rpc.full, req, resp)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: rpc.md.IsStreamingServer(), ClientStreams: rpc.md.IsStreamingClient()}, rpc.full)
	if err != nil {
		return err
	}
	// io.EOF: the server ended the call already (a refused token); RecvMsg
	// returns its status.
	if err := st.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	return st.RecvMsg(resp)
}

// allowed stands for "any outcome but Unauthenticated or
// PermissionDenied" in the matrix: a permitted call may still fail on its
// own merits (the matrix's requests are minimal).
const allowed = codes.OK

// matrixScenario is one kind of caller of the matrix.
type matrixScenario struct {
	name  string
	token string
	// want returns the outcome the call of an RPC with permission p must
	// have.
	want func(p permission) codes.Code
}

// outcome is what a call of the RPC full must have for this caller: the
// open probe methods (openMethods) are allowed to every caller, whatever
// its token; the others follow the permission table.
func (sc matrixScenario) outcome(full string) codes.Code {
	if openMethods[full] {
		return allowed
	}
	return sc.want(permissions[full])
}

// matrixScenarios are the callers of the matrix: no token, broken tokens
// of every kind, the three roles over the matrix's namespace, and an
// admin of another namespace.
func matrixScenarios(t *testing.T) []matrixScenario {
	t.Helper()
	expired := validClaims("admin", "*")
	expired["iat"], expired["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
	wrongIssuer := validClaims("admin", "*")
	wrongIssuer["iss"] = "https://evil.example"
	wrongAudience := validClaims("admin", "*")
	wrongAudience["aud"] = "someone-else"
	unauthenticated := func(permission) codes.Code { return codes.Unauthenticated }
	byRole := func(role auth.Role, namespaceGranted bool) func(permission) codes.Code {
		return func(p permission) codes.Code {
			if role < p.role || p.scoped && !namespaceGranted {
				return codes.PermissionDenied
			}
			return allowed
		}
	}
	return []matrixScenario{
		{"no token", "", unauthenticated},
		{"expired", mustSignToken(t, jwt.SigningMethodHS256, testAuthSecret, "", expired), unauthenticated},
		{"wrong signature", mustSignToken(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-another-secret"), "", validClaims("admin", "*")), unauthenticated},
		{"wrong issuer", mustSignToken(t, jwt.SigningMethodHS256, testAuthSecret, "", wrongIssuer), unauthenticated},
		{"wrong audience", mustSignToken(t, jwt.SigningMethodHS256, testAuthSecret, "", wrongAudience), unauthenticated},
		{"alg none", mustSignToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", validClaims("admin", "*")), unauthenticated},
		{"viewer", tokenFor(t, "viewer", matrixNS), byRole(auth.RoleViewer, true)},
		{"contributor", tokenFor(t, "contributor", matrixNS), byRole(auth.RoleContributor, true)},
		{"admin", tokenFor(t, "admin", "*"), byRole(auth.RoleAdmin, true)},
		{"admin of another namespace", tokenFor(t, "admin", otherNS), byRole(auth.RoleAdmin, false)},
	}
}

// TestAuthMatrix calls every RPC the public gRPC port serves, through a
// follower of a cluster with authentication and mutual TLS on, as each
// kind of caller, and checks the outcome the permission table promises
// (the open probe methods are allowed to every caller):
// Unauthenticated for a missing or bad token, PermissionDenied for a
// valid token without the role or the namespace, anything else for a
// permitted call. Before the permitted calls of a caller run, the state
// of every node is hashed: the refused calls must not have changed a
// byte of it. The same matrix then runs over REST.
func TestAuthMatrix(t *testing.T) {
	c := mustStartCluster(t, 3, secureOptions(t, mustPKI(t, "matrix-ca"), nil))
	leader := c.leader(t)
	admin := tokenFor(t, "admin", "*")
	if _, err := leader.namespaces().PutNamespace(withToken(testCtx(t), admin), namespaceRequest(matrixNS)); err != nil {
		t.Fatalf("PutNamespace as admin: %v", err)
	}
	if _, err := leader.objects().PutKey(withToken(testCtx(t), admin), putKeyRequest(matrixNS, "obj-1", "k1")); err != nil {
		t.Fatalf("PutKey as admin: %v", err)
	}
	via := c.followers(t)[0]
	rpcs := servedRPCs(t, via)
	for _, sc := range matrixScenarios(t) {
		var refused, permitted []servedRPC
		for _, rpc := range rpcs {
			if sc.outcome(rpc.full) == allowed {
				permitted = append(permitted, rpc)
			} else {
				refused = append(refused, rpc)
			}
		}
		before := c.mustStateHash(t)
		for _, rpc := range refused {
			err := callRPC(withToken(testCtx(t), sc.token), t, via.conn, rpc, newRequest(t, rpc))
			want := sc.outcome(rpc.full)
			if status.Code(err) != want {
				t.Errorf("%s as %s: %v, want %s", rpc.full, sc.name, err, want)
			} else if msg := status.Convert(err).Message(); strings.Contains(msg, string(testAuthSecret)) || sc.token != "" && strings.Contains(msg, sc.token) {
				t.Errorf("%s as %s: the error leaks a secret or the token: %q", rpc.full, sc.name, msg)
			}
		}
		if after := c.mustStateHash(t); !bytes.Equal(before, after) {
			t.Errorf("%s: refused calls changed the state", sc.name)
		}
		for _, rpc := range permitted {
			err := callRPC(withToken(testCtx(t), sc.token), t, via.conn, rpc, newRequest(t, rpc))
			if code := status.Code(err); code == codes.Unauthenticated || code == codes.PermissionDenied {
				t.Errorf("%s as %s: %v, want it permitted", rpc.full, sc.name, err)
			}
		}
	}
	t.Run("REST", func(t *testing.T) { restMatrix(t, c, via, rpcs) })
}

// restMatrix runs the matrix over the REST routes of rpcs (those with an
// HTTP binding): 401 with a Bearer challenge, 403, or anything else.
func restMatrix(t *testing.T, c *testCluster, via *testNode, rpcs []servedRPC) {
	client := &http.Client{Timeout: 10 * time.Second}
	routes := 0
	for _, sc := range matrixScenarios(t) {
		before := c.mustStateHash(t)
		var permitted []servedRPC
		for _, rpc := range rpcs {
			want := sc.outcome(rpc.full)
			if want == allowed {
				permitted = append(permitted, rpc)
				continue
			}
			resp, body := restMatrixCall(t, client, via, rpc, sc.token)
			if resp == nil {
				continue
			}
			routes++
			wantHTTP := map[codes.Code]int{codes.Unauthenticated: http.StatusUnauthorized, codes.PermissionDenied: http.StatusForbidden}[want]
			if resp.StatusCode != wantHTTP {
				t.Errorf("REST %s as %s: HTTP %d %s, want %d", rpc.full, sc.name, resp.StatusCode, body, wantHTTP)
			}
			if wantHTTP == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("REST %s as %s: 401 without a Bearer WWW-Authenticate header", rpc.full, sc.name)
			}
		}
		if after := c.mustStateHash(t); !bytes.Equal(before, after) {
			t.Errorf("REST %s: refused calls changed the state", sc.name)
		}
		for _, rpc := range permitted {
			resp, body := restMatrixCall(t, client, via, rpc, sc.token)
			if resp != nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
				t.Errorf("REST %s as %s: HTTP %d %s, want it permitted", rpc.full, sc.name, resp.StatusCode, body)
			}
		}
	}
	if routes < 10 {
		t.Fatalf("only %d REST calls were checked", routes)
	}
}

// restCall calls rpc's REST route (its google.api.http binding, with the
// matrix values in the path) on n with token; nil when rpc has no route.
// A streaming answer is cut after its headers.
func restMatrixCall(t *testing.T, client *http.Client, n *testNode, rpc servedRPC, token string) (*http.Response, string) {
	t.Helper()
	rule, _ := proto.GetExtension(rpc.md.Options(), annotations.E_Http).(*annotations.HttpRule)
	if rule == nil {
		return nil, ""
	}
	var method, path string
	switch p := rule.Pattern.(type) {
	case *annotations.HttpRule_Get:
		method, path = http.MethodGet, p.Get
	case *annotations.HttpRule_Put:
		method, path = http.MethodPut, p.Put
	case *annotations.HttpRule_Post:
		method, path = http.MethodPost, p.Post
	case *annotations.HttpRule_Delete:
		method, path = http.MethodDelete, p.Delete
	case *annotations.HttpRule_Patch:
		method, path = http.MethodPatch, p.Patch
	default:
		t.Fatalf("%s: unsupported HTTP rule %T", rpc.full, rule.Pattern)
	}
	for {
		i := strings.Index(path, "{")
		if i < 0 {
			break
		}
		j := strings.Index(path[i:], "}") + i
		name, _, _ := strings.Cut(path[i+1:j], "=")
		v, ok := matrixValues[protoreflect.Name(name)]
		if !ok {
			v = "x"
		}
		path = path[:i] + v + path[j+1:]
	}
	var body io.Reader
	if rule.Body != "" {
		b, _ := json.Marshal(map[string]string{})
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("http://%s%s", n.Server.HTTPAddr(), path), body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("REST %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if rpc.md.IsStreamingServer() && resp.StatusCode == http.StatusOK {
		return resp, ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp, string(b)
}

// TestListNamespacesShowsOnlyGranted: a token limited to some namespaces
// lists only those.
func TestListNamespacesShowsOnlyGranted(t *testing.T) {
	c := mustStartCluster(t, 1, clusterOptions{Configure: func(_ string, cfg *NodeConfig) { cfg.Server.Auth = testAuthConfig() }})
	n := c.leader(t)
	admin := tokenFor(t, "admin", "*")
	for _, ns := range []string{"a", "b", "c"} {
		if _, err := n.namespaces().PutNamespace(withToken(testCtx(t), admin), namespaceRequest(ns)); err != nil {
			t.Fatal(err)
		}
	}
	for token, want := range map[string][]string{
		admin:                           {"a", "b", "c"},
		tokenFor(t, "viewer", "b"):      {"b"},
		tokenFor(t, "viewer", "x"):      nil,
		tokenFor(t, "viewer", "a", "c"): {"a", "c"},
	} {
		resp, err := n.namespaces().ListNamespaces(withToken(testCtx(t), token), listNamespacesRequest())
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ns := range resp.Namespaces {
			got = append(got, ns.Name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("token for %v lists %v", want, got)
		}
	}
}
