package server

import (
	"fmt"
	"testing"

	_ "github.com/cairndb/cairn/api/cairn/v1" // registers the public API's descriptors
	"github.com/cairndb/cairn/auth"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// publicMethods returns the full name of every RPC of every service in
// the generated descriptors of package cairn.v1, and each one's method
// descriptor.
func publicMethods(t *testing.T) map[string]protoreflect.MethodDescriptor {
	t.Helper()
	out := map[string]protoreflect.MethodDescriptor{}
	protoregistry.GlobalFiles.RangeFilesByPackage("cairn.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				out[fmt.Sprintf("/%s/%s", sd.FullName(), md.Name())] = md
			}
		}
		return true
	})
	if len(out) < 15 {
		t.Fatalf("found only %d RPCs in package cairn.v1", len(out))
	}
	return out
}

// TestPermissionTableCoversEveryRPC walks every RPC of the public API's
// generated descriptors: each must have an entry in the permission table,
// and a namespace-scoped one must take a string field "namespace" (the
// interceptor reads the namespace from it). A new RPC without an entry
// fails here, instead of being refused to everyone at run time.
func TestPermissionTableCoversEveryRPC(t *testing.T) {
	methods := publicMethods(t)
	for name, md := range methods {
		p, ok := permissions[name]
		if !ok {
			t.Errorf("%s has no entry in the permissions table (server/permissions.go): add the role it needs and whether it is namespace-scoped", name)
			continue
		}
		if p.role < auth.RoleViewer || p.role > auth.RoleAdmin {
			t.Errorf("%s needs role %v, which no token can hold", name, p.role)
		}
		if p.scoped {
			fd := md.Input().Fields().ByName("namespace")
			if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
				t.Errorf("%s is namespace-scoped but %s has no string field \"namespace\"", name, md.Input().FullName())
			}
		}
	}
	for name := range permissions {
		if _, ok := methods[name]; !ok {
			t.Logf("%s is in the permissions table but not in the generated descriptors", name)
		}
	}
}

// TestPermissionTableRoles pins down what each role may do, so that a
// change of the table is a visible change of this test: reads and
// watches are the viewer's, writes and transactions the contributor's,
// namespaces and the cluster the admin's.
func TestPermissionTableRoles(t *testing.T) {
	want := map[string]permission{
		"/cairn.v1.NamespaceService/PutNamespace":     {auth.RoleAdmin, true},
		"/cairn.v1.NamespaceService/DeleteNamespace":  {auth.RoleAdmin, true},
		"/cairn.v1.NamespaceService/GetNamespace":     {auth.RoleViewer, true},
		"/cairn.v1.NamespaceService/ListNamespaces":   {auth.RoleViewer, false},
		"/cairn.v1.ObjectService/GetKey":              {auth.RoleViewer, true},
		"/cairn.v1.ObjectService/ListKeys":            {auth.RoleViewer, true},
		"/cairn.v1.ObjectService/BatchGet":            {auth.RoleViewer, true},
		"/cairn.v1.ObjectService/GetObject":           {auth.RoleViewer, true},
		"/cairn.v1.ObjectService/ListObjects":         {auth.RoleViewer, true},
		"/cairn.v1.ObjectService/PutKey":              {auth.RoleContributor, true},
		"/cairn.v1.ObjectService/DeleteKey":           {auth.RoleContributor, true},
		"/cairn.v1.ObjectService/BatchWrite":          {auth.RoleContributor, true},
		"/cairn.v1.ObjectService/DeleteObject":        {auth.RoleContributor, true},
		"/cairn.v1.ObjectService/Txn":                 {auth.RoleContributor, true},
		"/cairn.v1.WatchService/Watch":                {auth.RoleViewer, true},
		"/cairn.v1.AlarmService/SetAlarm":             {auth.RoleContributor, true},
		"/cairn.v1.AlarmService/GetAlarm":             {auth.RoleViewer, true},
		"/cairn.v1.AlarmService/DeleteAlarm":          {auth.RoleContributor, true},
		"/cairn.v1.AlarmService/ListAlarms":           {auth.RoleViewer, true},
		"/cairn.v1.AlarmService/ClaimAlarms":          {auth.RoleContributor, true},
		"/cairn.v1.AlarmService/AckAlarms":            {auth.RoleContributor, true},
		"/cairn.v1.AlarmService/SubscribeAlarms":      {auth.RoleContributor, true},
		"/cairn.v1.ClusterService/GetCluster":         {auth.RoleAdmin, false},
		"/cairn.v1.ClusterService/AddMember":          {auth.RoleAdmin, false},
		"/cairn.v1.ClusterService/RemoveMember":       {auth.RoleAdmin, false},
		"/cairn.v1.ClusterService/TransferLeadership": {auth.RoleAdmin, false},
	}
	for name, w := range want {
		if got, ok := permissions[name]; !ok || got != w {
			t.Errorf("%s: table says %+v, want %+v", name, got, w)
		}
	}
}
