package server

import (
	"context"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
)

type namespaceService struct {
	cairnv1.UnimplementedNamespaceServiceServer
	s *Server
}

func (n *namespaceService) PutNamespace(ctx context.Context, req *cairnv1.PutNamespaceRequest) (*cairnv1.PutNamespaceResponse, error) {
	if err := checkNamespace(req.Namespace); err != nil {
		return nil, err
	}
	settings := &raftcmdv1.NamespaceSettings{MaxObjectBytes: req.GetSettings().GetMaxObjectBytes()}
	if err := alarmSettingsToLog(req.GetSettings().GetAlarms(), settings); err != nil {
		return nil, err
	}
	res, err := n.s.propose(ctx, &raftcmdv1.Command{RequestId: req.RequestId, Op: &raftcmdv1.Command_PutNamespace{
		PutNamespace: &raftcmdv1.PutNamespace{Name: req.Namespace, Settings: settings},
	}})
	if err != nil {
		return nil, err
	}
	r := res.GetNamespace()
	return &cairnv1.PutNamespaceResponse{Header: n.s.writeHeader(res), Namespace: toAPINamespace(r.GetNamespace()), Created: r.GetCreated()}, nil
}

func (n *namespaceService) GetNamespace(ctx context.Context, req *cairnv1.GetNamespaceRequest) (*cairnv1.GetNamespaceResponse, error) {
	if err := checkNamespace(req.Namespace); err != nil {
		return nil, err
	}
	h, err := n.s.readBarrier(ctx, req.Consistency, req.MaxStalenessMs)
	if err != nil {
		return nil, err
	}
	ns, err := n.s.state.Namespace(req.Namespace)
	if err != nil {
		return nil, err
	}
	return &cairnv1.GetNamespaceResponse{Header: h, Namespace: toAPINamespace(ns)}, nil
}

func (n *namespaceService) ListNamespaces(ctx context.Context, req *cairnv1.ListNamespacesRequest) (*cairnv1.ListNamespacesResponse, error) {
	h, err := n.s.readBarrier(ctx, req.Consistency, req.MaxStalenessMs)
	if err != nil {
		return nil, err
	}
	all, err := n.s.state.Namespaces()
	if err != nil {
		return nil, err
	}
	resp := &cairnv1.ListNamespacesResponse{Header: h, Namespaces: make([]*cairnv1.Namespace, 0, len(all))}
	caller := Caller(ctx)
	for _, ns := range all {
		if caller != nil && !caller.AllowsNamespace(ns.Name) {
			continue // a token sees only the namespaces it is granted
		}
		resp.Namespaces = append(resp.Namespaces, toAPINamespace(ns))
	}
	return resp, nil
}

func (n *namespaceService) DeleteNamespace(ctx context.Context, req *cairnv1.DeleteNamespaceRequest) (*cairnv1.DeleteNamespaceResponse, error) {
	if err := checkNamespace(req.Namespace); err != nil {
		return nil, err
	}
	res, err := n.s.propose(ctx, &raftcmdv1.Command{RequestId: req.RequestId, Op: &raftcmdv1.Command_DeleteNamespace{
		DeleteNamespace: &raftcmdv1.DeleteNamespace{Name: req.Namespace, Force: req.Force},
	}})
	if err != nil {
		return nil, err
	}
	return &cairnv1.DeleteNamespaceResponse{Header: n.s.writeHeader(res), DeletedObjects: res.GetNamespace().GetDeletedObjects()}, nil
}
