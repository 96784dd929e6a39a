package fsm

import (
	"fmt"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

func (a *applier) applyPutNamespace(p *raftcmdv1.PutNamespace) (*raftcmdv1.Result, error) {
	if err := ValidateNamespace(p.GetName()); err != nil {
		return nil, err
	}
	if err := ValidateAlarmSettings(p.GetSettings()); err != nil {
		return nil, err
	}
	ns, err := getNamespace(a.tx, p.Name)
	created := err != nil
	if created {
		ns = &raftcmdv1.Namespace{Name: p.Name, CreateRevision: a.index}
	}
	ns.Settings = p.GetSettings()
	if ns.Settings == nil {
		ns.Settings = &raftcmdv1.NamespaceSettings{}
	}
	ns.ModRevision = a.index
	a.putNamespace(ns)
	return &raftcmdv1.Result{Result: &raftcmdv1.Result_Namespace{
		Namespace: &raftcmdv1.NamespaceResult{Namespace: ns, Created: created},
	}}, nil
}

func (a *applier) applyDeleteNamespace(d *raftcmdv1.DeleteNamespace) (*raftcmdv1.Result, error) {
	ns, err := getNamespace(a.tx, d.GetName())
	if err != nil {
		return nil, err
	}
	if ns.ObjectCount > 0 && !d.Force {
		return nil, fmt.Errorf("%w: namespace %q holds %d objects; delete them or use force", ErrNamespaceNotEmpty, ns.Name, ns.ObjectCount)
	}
	if c := ns.GetAlarms(); c.GetPending()+c.GetDelivering()+c.GetDead() > 0 && !d.Force {
		return nil, fmt.Errorf("%w: namespace %q holds %d alarms; delete them or use force", ErrNamespaceNotEmpty, ns.Name, c.GetPending()+c.GetDelivering()+c.GetDead())
	}
	// Delete object by object, seeking afresh each time: bounded memory
	// however many objects the namespace holds.
	prefix := indexKey(ns.Name, "")
	idx := a.tx.Bucket(bucketObjects)
	var deleted uint64
	for {
		k, v := idx.Cursor().Seek(prefix)
		if k == nil || !hasPrefix(k, prefix) {
			break
		}
		a.deleteObjectData(ns, string(k[len(prefix):]), v[0])
		deleted++
	}
	a.deleteNamespaceAlarms(ns)
	a.delete(a.tx.Bucket(bucketNamespaces), []byte(ns.Name))
	ns.ObjectCount = 0
	ns.Alarms = nil
	return &raftcmdv1.Result{Result: &raftcmdv1.Result_Namespace{
		Namespace: &raftcmdv1.NamespaceResult{Namespace: ns, DeletedObjects: deleted},
	}}, nil
}

func (a *applier) applySetMember(s *raftcmdv1.SetMember) (*raftcmdv1.Result, error) {
	m := s.GetMember()
	if m.GetId() == "" {
		return nil, fmt.Errorf("%w: member id must not be empty", ErrInvalidArgument)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	must(err)
	a.put(a.tx.Bucket(bucketMembers), []byte(m.Id), b)
	return emptyResult(), nil
}

func (a *applier) applyRemoveMember(r *raftcmdv1.RemoveMember) (*raftcmdv1.Result, error) {
	b := a.tx.Bucket(bucketMembers)
	if b.Get([]byte(r.GetId())) == nil {
		return nil, fmt.Errorf("%w: %q", ErrMemberNotFound, r.GetId())
	}
	a.delete(b, []byte(r.Id))
	return emptyResult(), nil
}

// getNamespace reads namespace name's record.
func getNamespace(tx *bolt.Tx, name string) (*raftcmdv1.Namespace, error) {
	v, err := namespaceRecord(tx, name)
	if err != nil {
		return nil, err
	}
	ns := &raftcmdv1.Namespace{}
	if err := proto.Unmarshal(v, ns); err != nil {
		return nil, fmt.Errorf("fsm: namespace %q: %w", name, err)
	}
	return ns, nil
}

// checkNamespace is getNamespace for a caller that only needs to know the
// namespace exists: it decodes nothing.
func checkNamespace(tx *bolt.Tx, name string) error {
	_, err := namespaceRecord(tx, name)
	return err
}

// namespaceRecord returns the stored (encoded) record of namespace name.
func namespaceRecord(tx *bolt.Tx, name string) ([]byte, error) {
	v := tx.Bucket(bucketNamespaces).Get([]byte(name))
	if v == nil {
		return nil, fmt.Errorf("%w: %q", ErrNamespaceNotFound, name)
	}
	return v, nil
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}
