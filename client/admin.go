package client

import (
	"context"
	"crypto/tls"
	"iter"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc"
)

// Object returns an object's info; an object without state is
// ErrNotFound.
func (c *Client) Object(ctx context.Context, ns, object string, opts ...ReadOption) (*cairnv1.ObjectInfo, error) {
	o := readOpts(opts)
	var resp *cairnv1.GetObjectResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = c.objects(conn).GetObject(ctx, &cairnv1.GetObjectRequest{Namespace: ns, Object: object, Consistency: o.consistency, MaxStalenessMs: o.maxStaleness})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Object, nil
}

// Objects walks a namespace's objects whose names start with prefix, in
// name order.
func (c *Client) Objects(ctx context.Context, ns, prefix string, opts ...ReadOption) iter.Seq2[*cairnv1.ObjectInfo, error] {
	o := readOpts(opts)
	return func(yield func(*cairnv1.ObjectInfo, error) bool) {
		token := ""
		for {
			var resp *cairnv1.ListObjectsResponse
			err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
				resp, err = c.objects(conn).ListObjects(ctx, &cairnv1.ListObjectsRequest{Namespace: ns, Prefix: prefix, PageToken: token,
					Consistency: o.consistency, MaxStalenessMs: o.maxStaleness})
				return err
			})
			if err != nil {
				yield(nil, err)
				return
			}
			for _, obj := range resp.Objects {
				if !yield(obj, nil) {
					return
				}
			}
			if resp.NextPageToken == "" {
				return
			}
			token = resp.NextPageToken
		}
	}
}

// DeleteObject deletes all of an object's state atomically and returns how
// many keys it held.
func (c *Client) DeleteObject(ctx context.Context, ns, object string, opts ...WriteOption) (uint64, error) {
	o := writeOpts(opts)
	var resp *cairnv1.DeleteObjectResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = c.objects(conn).DeleteObject(ctx, &cairnv1.DeleteObjectRequest{Namespace: ns, Object: object, RequestId: o.requestID})
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.DeletedKeys, nil
}

func namespaces(conn *grpc.ClientConn) cairnv1.NamespaceServiceClient {
	return cairnv1.NewNamespaceServiceClient(conn)
}

// PutNamespace creates a namespace or replaces its settings (nil: none).
func (c *Client) PutNamespace(ctx context.Context, name string, settings *cairnv1.NamespaceSettings, opts ...WriteOption) (*cairnv1.PutNamespaceResponse, error) {
	o := writeOpts(opts)
	var resp *cairnv1.PutNamespaceResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = namespaces(conn).PutNamespace(ctx, &cairnv1.PutNamespaceRequest{Namespace: name, Settings: settings, RequestId: o.requestID})
		return err
	})
	return resp, err
}

// Namespace returns one namespace.
func (c *Client) Namespace(ctx context.Context, name string) (*cairnv1.Namespace, error) {
	var resp *cairnv1.GetNamespaceResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = namespaces(conn).GetNamespace(ctx, &cairnv1.GetNamespaceRequest{Namespace: name})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Namespace, nil
}

// Namespaces returns every namespace.
func (c *Client) Namespaces(ctx context.Context) ([]*cairnv1.Namespace, error) {
	var resp *cairnv1.ListNamespacesResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = namespaces(conn).ListNamespaces(ctx, &cairnv1.ListNamespacesRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Namespaces, nil
}

// DeleteNamespace deletes a namespace (with force, its objects too).
func (c *Client) DeleteNamespace(ctx context.Context, name string, force bool, opts ...WriteOption) (uint64, error) {
	o := writeOpts(opts)
	var resp *cairnv1.DeleteNamespaceResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = namespaces(conn).DeleteNamespace(ctx, &cairnv1.DeleteNamespaceRequest{Namespace: name, Force: force, RequestId: o.requestID})
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.DeletedObjects, nil
}

func cluster(conn *grpc.ClientConn) cairnv1.ClusterServiceClient {
	return cairnv1.NewClusterServiceClient(conn)
}

// Cluster returns the members and Raft state as the answering node sees
// them.
func (c *Client) Cluster(ctx context.Context) (*cairnv1.GetClusterResponse, error) {
	var resp *cairnv1.GetClusterResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = cluster(conn).GetCluster(ctx, &cairnv1.GetClusterRequest{})
		return err
	})
	return resp, err
}

// ClusterOf returns the cluster state as the node at endpoint index i
// sees it (no failover: for status tables).
func (c *Client) ClusterOf(ctx context.Context, i int) (*cairnv1.GetClusterResponse, error) {
	resp, err := cluster(c.conns[i]).GetCluster(ctx, &cairnv1.GetClusterRequest{})
	return resp, wrap(err)
}

// AddMember adds a node (a voter unless req.Nonvoter).
func (c *Client) AddMember(ctx context.Context, req *cairnv1.AddMemberRequest) (*cairnv1.AddMemberResponse, error) {
	var resp *cairnv1.AddMemberResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = cluster(conn).AddMember(ctx, req)
		return err
	})
	return resp, err
}

// RemoveMember removes a node.
func (c *Client) RemoveMember(ctx context.Context, id string) error {
	return c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) error {
		_, err := cluster(conn).RemoveMember(ctx, &cairnv1.RemoveMemberRequest{Id: id})
		return err
	})
}

// TransferLeadership hands leadership to member id (any voter when empty)
// and returns the new leader.
func (c *Client) TransferLeadership(ctx context.Context, id string) (string, error) {
	var resp *cairnv1.TransferLeadershipResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = cluster(conn).TransferLeadership(ctx, &cairnv1.TransferLeadershipRequest{Id: id})
		return err
	})
	if err != nil {
		return "", err
	}
	return resp.LeaderId, nil
}

// Endpoints returns the configured endpoints.
func (c *Client) Endpoints() []string { return append([]string(nil), c.cfg.Endpoints...) }

// SnapshotOf takes a Raft snapshot on the node at endpoint index i and
// returns the index it covers (no failover: each node snapshots itself).
func (c *Client) SnapshotOf(ctx context.Context, i int) (uint64, error) {
	resp, err := cluster(c.conns[i]).Snapshot(ctx, &cairnv1.SnapshotRequest{})
	if err != nil {
		return 0, wrap(err)
	}
	return resp.Index, nil
}

// StateHashOf returns the state hash of the node at endpoint index i and
// the applied index it covers (no failover: the point is to compare
// members).
func (c *Client) StateHashOf(ctx context.Context, i int) ([]byte, uint64, error) {
	resp, err := cluster(c.conns[i]).GetStateHash(ctx, &cairnv1.GetStateHashRequest{})
	if err != nil {
		return nil, 0, wrap(err)
	}
	return resp.Hash, resp.AppliedIndex, nil
}

// TLSConfig returns the TLS configuration the client was made with (nil:
// plain TCP), to reach other members the same way.
func (c *Client) TLSConfig() *tls.Config { return c.cfg.TLS }
