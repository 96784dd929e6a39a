package server

import (
	"github.com/cairndb/cairn/auth"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// permission is what a caller needs to call one RPC.
type permission struct {
	// role is the least role that may call it.
	role auth.Role
	// scoped means the request names a namespace (its string field
	// "namespace") that the caller's token must grant.
	scoped bool
}

// permissions is the one table of who may call what, by full method
// name, for every RPC of the public API (cairn.v1). A method missing here
// is refused to everyone when authentication is on; its test walks the
// generated service descriptors, so a new RPC without an entry fails the
// build's tests.
//
// viewer reads (and watches); contributor also writes, runs transactions
// and manages alarms; admin also manages namespaces, the cluster and
// backups. Namespace-scoped methods check the request's namespace against
// the token's namespaces claim; ListNamespaces is not scoped, but answers
// only the namespaces the token grants.
var permissions = map[string]permission{
	"/cairn.v1.NamespaceService/PutNamespace":    {auth.RoleAdmin, true},
	"/cairn.v1.NamespaceService/GetNamespace":    {auth.RoleViewer, true},
	"/cairn.v1.NamespaceService/ListNamespaces":  {auth.RoleViewer, false},
	"/cairn.v1.NamespaceService/DeleteNamespace": {auth.RoleAdmin, true},

	"/cairn.v1.ObjectService/ListObjects":  {auth.RoleViewer, true},
	"/cairn.v1.ObjectService/GetObject":    {auth.RoleViewer, true},
	"/cairn.v1.ObjectService/DeleteObject": {auth.RoleContributor, true},
	"/cairn.v1.ObjectService/GetKey":       {auth.RoleViewer, true},
	"/cairn.v1.ObjectService/PutKey":       {auth.RoleContributor, true},
	"/cairn.v1.ObjectService/DeleteKey":    {auth.RoleContributor, true},
	"/cairn.v1.ObjectService/ListKeys":     {auth.RoleViewer, true},
	"/cairn.v1.ObjectService/BatchGet":     {auth.RoleViewer, true},
	"/cairn.v1.ObjectService/BatchWrite":   {auth.RoleContributor, true},
	"/cairn.v1.ObjectService/Txn":          {auth.RoleContributor, true},

	"/cairn.v1.WatchService/Watch": {auth.RoleViewer, true},

	"/cairn.v1.AlarmService/SetAlarm":        {auth.RoleContributor, true},
	"/cairn.v1.AlarmService/GetAlarm":        {auth.RoleViewer, true},
	"/cairn.v1.AlarmService/DeleteAlarm":     {auth.RoleContributor, true},
	"/cairn.v1.AlarmService/ListAlarms":      {auth.RoleViewer, true},
	"/cairn.v1.AlarmService/ClaimAlarms":     {auth.RoleContributor, true},
	"/cairn.v1.AlarmService/AckAlarms":       {auth.RoleContributor, true},
	"/cairn.v1.AlarmService/SubscribeAlarms": {auth.RoleContributor, true},

	"/cairn.v1.ClusterService/GetCluster":         {auth.RoleAdmin, false},
	"/cairn.v1.ClusterService/AddMember":          {auth.RoleAdmin, false},
	"/cairn.v1.ClusterService/RemoveMember":       {auth.RoleAdmin, false},
	"/cairn.v1.ClusterService/TransferLeadership": {auth.RoleAdmin, false},
	"/cairn.v1.ClusterService/Snapshot":           {auth.RoleAdmin, false},
	"/cairn.v1.ClusterService/GetStateHash":       {auth.RoleAdmin, false},
	"/cairn.v1.ClusterService/Backup":             {auth.RoleAdmin, false},
	"/cairn.v1.ClusterService/Restore":            {auth.RoleAdmin, false},
}

// openMethods are the methods of the public gRPC port that need no token
// (probes.go), an exemption from the table above:
//
//   - the health service: load balancers, orchestrators and grpc-go's
//     client-side health checking call it without credentials, and it
//     tells only whether this node can answer now, as /readyz does;
//   - server reflection: it describes the public schema only (the cairn.v1
//     services and the types they use; never the peer API or the Raft
//     command format), which the OpenAPI document at /openapi.json, open
//     too, describes as well. Every call it lists still needs its token.
//
// A test checks that every method the public port serves is in exactly
// one of the two tables.
var openMethods = map[string]bool{
	healthpb.Health_Check_FullMethodName:                                   true,
	healthpb.Health_List_FullMethodName:                                    true,
	healthpb.Health_Watch_FullMethodName:                                   true,
	reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      true,
	reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: true,
}

// requestNamespace returns the namespace a request names: its string field
// "namespace", or "" when it has none.
func requestNamespace(req any) string {
	m, ok := req.(proto.Message)
	if !ok {
		return ""
	}
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("namespace")
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return ""
	}
	return r.Get(fd).String()
}
