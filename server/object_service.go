package server

import (
	"context"
	"fmt"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
)

type objectService struct {
	cairnv1.UnimplementedObjectServiceServer
	s *Server
}

func (o *objectService) GetKey(ctx context.Context, req *cairnv1.GetKeyRequest) (*cairnv1.GetKeyResponse, error) {
	if err := checkObject(req.Namespace, req.Object); err != nil {
		return nil, err
	}
	if err := checkKey("key", req.Key); err != nil {
		return nil, err
	}
	h, err := o.s.readBarrier(ctx, req.Consistency, req.MaxStalenessMs)
	if err != nil {
		return nil, err
	}
	kv, err := o.s.state.Get(req.Namespace, req.Object, req.Key)
	if err != nil {
		return nil, err
	}
	v, bin, err := decodeValue(kv)
	if err != nil {
		return nil, err
	}
	resp := &cairnv1.GetKeyResponse{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Header: h}
	if v != nil {
		resp.Content = &cairnv1.GetKeyResponse_Value{Value: v}
	} else {
		resp.Content = &cairnv1.GetKeyResponse_BinaryValue{BinaryValue: bin}
	}
	return resp, nil
}

func (o *objectService) PutKey(ctx context.Context, req *cairnv1.PutKeyRequest) (*cairnv1.PutKeyResponse, error) {
	if err := checkObject(req.Namespace, req.Object); err != nil {
		return nil, err
	}
	if err := checkKey("key", req.Key); err != nil {
		return nil, err
	}
	_, isBinary := req.Content.(*cairnv1.PutKeyRequest_BinaryValue)
	value, enc, err := encodeValue("request", req.GetValue(), req.GetBinaryValue(), isBinary)
	if err != nil {
		return nil, err
	}
	if err := o.s.checkValue("value", value); err != nil {
		return nil, err
	}
	put := &raftcmdv1.KeyPut{Key: req.Key, Value: value, Encoding: enc}
	if req.ExpectedModRevision != nil {
		res, err := o.s.conditional(ctx, req.Namespace, req.Object, req.Key, *req.ExpectedModRevision, req.RequestId,
			&raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_Put{Put: &raftcmdv1.TxnPut{Object: req.Object, Put: put}}})
		if err != nil {
			return nil, err
		}
		created := res.GetTxn().GetResults()[0].GetPut().GetCreated()
		return &cairnv1.PutKeyResponse{Header: o.s.writeHeader(res), Revision: res.Revision, Created: created}, nil
	}
	res, err := o.s.propose(ctx, &raftcmdv1.Command{RequestId: req.RequestId, Op: &raftcmdv1.Command_BatchWrite{
		BatchWrite: &raftcmdv1.BatchWrite{Namespace: req.Namespace, Object: req.Object, Puts: []*raftcmdv1.KeyPut{put}},
	}})
	if err != nil {
		return nil, err
	}
	return &cairnv1.PutKeyResponse{Header: o.s.writeHeader(res), Revision: res.Revision, Created: res.GetBatchWrite().GetCreated() == 1}, nil
}

func (o *objectService) DeleteKey(ctx context.Context, req *cairnv1.DeleteKeyRequest) (*cairnv1.DeleteKeyResponse, error) {
	if err := checkObject(req.Namespace, req.Object); err != nil {
		return nil, err
	}
	if err := checkKey("key", req.Key); err != nil {
		return nil, err
	}
	if req.ExpectedModRevision != nil {
		res, err := o.s.conditional(ctx, req.Namespace, req.Object, req.Key, *req.ExpectedModRevision, req.RequestId,
			&raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_Delete{Delete: &raftcmdv1.TxnDelete{Object: req.Object, Key: req.Key}}})
		if err != nil {
			return nil, err
		}
		deleted := res.GetTxn().GetResults()[0].GetDelete().GetDeleted() == 1
		return &cairnv1.DeleteKeyResponse{Header: o.s.writeHeader(res), Revision: res.Revision, Deleted: deleted}, nil
	}
	res, err := o.s.propose(ctx, &raftcmdv1.Command{RequestId: req.RequestId, Op: &raftcmdv1.Command_BatchWrite{
		BatchWrite: &raftcmdv1.BatchWrite{Namespace: req.Namespace, Object: req.Object, Deletes: []string{req.Key}},
	}})
	if err != nil {
		return nil, err
	}
	return &cairnv1.DeleteKeyResponse{Header: o.s.writeHeader(res), Revision: res.Revision, Deleted: res.GetBatchWrite().GetDeleted() == 1}, nil
}

func (o *objectService) BatchGet(ctx context.Context, req *cairnv1.BatchGetRequest) (*cairnv1.BatchGetResponse, error) {
	if err := checkObject(req.Namespace, req.Object); err != nil {
		return nil, err
	}
	if err := o.s.checkBatchSize("keys", len(req.Keys)); err != nil {
		return nil, err
	}
	for i, k := range req.Keys {
		if err := checkKey(fmt.Sprintf("keys[%d]", i), k); err != nil {
			return nil, err
		}
	}
	h, err := o.s.readBarrier(ctx, req.Consistency, req.MaxStalenessMs)
	if err != nil {
		return nil, err
	}
	kvs, err := o.s.state.BatchGet(req.Namespace, req.Object, req.Keys)
	if err != nil {
		return nil, err
	}
	resp := &cairnv1.BatchGetResponse{Header: h, Kvs: make([]*cairnv1.KeyValue, 0, len(kvs))}
	for _, kv := range kvs {
		a, err := toAPIKeyValue(kv, false)
		if err != nil {
			return nil, err
		}
		resp.Kvs = append(resp.Kvs, a)
	}
	return resp, nil
}

func (o *objectService) BatchWrite(ctx context.Context, req *cairnv1.BatchWriteRequest) (*cairnv1.BatchWriteResponse, error) {
	if err := checkObject(req.Namespace, req.Object); err != nil {
		return nil, err
	}
	if err := o.s.checkBatchSize("puts and deletes", len(req.Puts)+len(req.Deletes)); err != nil {
		return nil, err
	}
	w := &raftcmdv1.BatchWrite{Namespace: req.Namespace, Object: req.Object, Deletes: req.Deletes}
	size := 0
	for i, k := range req.Deletes {
		if err := checkKey(fmt.Sprintf("deletes[%d]", i), k); err != nil {
			return nil, err
		}
		size += len(k)
	}
	for i, p := range req.Puts {
		field := fmt.Sprintf("puts[%d]", i)
		if err := checkKey(field+".key", p.GetKey()); err != nil {
			return nil, err
		}
		_, isBinary := p.Content.(*cairnv1.KeyPut_BinaryValue)
		value, enc, err := encodeValue(field, p.GetValue(), p.GetBinaryValue(), isBinary)
		if err != nil {
			return nil, err
		}
		if err := o.s.checkValue(field+".value", value); err != nil {
			return nil, err
		}
		size += len(p.Key) + len(value)
		w.Puts = append(w.Puts, &raftcmdv1.KeyPut{Key: p.Key, Value: value, Encoding: enc})
	}
	if err := o.s.checkRequestBytes(size); err != nil {
		return nil, err
	}
	res, err := o.s.propose(ctx, &raftcmdv1.Command{RequestId: req.RequestId, Op: &raftcmdv1.Command_BatchWrite{BatchWrite: w}})
	if err != nil {
		return nil, err
	}
	bw := res.GetBatchWrite()
	return &cairnv1.BatchWriteResponse{Header: o.s.writeHeader(res), Revision: res.Revision, Created: bw.GetCreated(), Deleted: bw.GetDeleted()}, nil
}

func (o *objectService) ListKeys(ctx context.Context, req *cairnv1.ListKeysRequest) (*cairnv1.ListKeysResponse, error) {
	if err := checkObject(req.Namespace, req.Object); err != nil {
		return nil, err
	}
	limit, err := listLimit(req.Limit)
	if err != nil {
		return nil, err
	}
	for _, b := range []struct{ field, key string }{{"prefix", req.Prefix}, {"start", req.Start}, {"start_after", req.StartAfter}, {"end", req.End}} {
		if err := checkBound(b.field, b.key); err != nil {
			return nil, err
		}
	}
	kind := byte('k')
	if req.Reverse {
		kind = 'r'
	}
	last, err := parsePageToken(kind, req.PageToken)
	if err != nil {
		return nil, err
	}
	r := keyRange(req, last)
	r.Limit, r.MaxBytes = limit, maxPageBytes
	h, err := o.s.readBarrier(ctx, req.Consistency, req.MaxStalenessMs)
	if err != nil {
		return nil, err
	}
	resp := &cairnv1.ListKeysResponse{Header: h}
	if r.Hi != "" && r.Hi <= r.Lo {
		return resp, nil // an empty range
	}
	kvs, more, err := o.s.state.List(req.Namespace, req.Object, r)
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		a, err := toAPIKeyValue(kv, req.KeysOnly)
		if err != nil {
			return nil, err
		}
		resp.Kvs = append(resp.Kvs, a)
	}
	if more && len(kvs) > 0 {
		resp.NextPageToken = pageToken(kind, kvs[len(kvs)-1].Key)
	}
	return resp, nil
}

// keyRange turns a listing's bounds, and the last key of the previous
// page, into one fsm.Range: the tightest lower and upper bound win.
func keyRange(req *cairnv1.ListKeysRequest, last string) fsm.Range {
	r := fsm.Range{Reverse: req.Reverse, KeysOnly: req.KeysOnly}
	raiseLo := func(k string, exclusive bool) {
		if k > r.Lo || k == r.Lo && exclusive {
			r.Lo, r.LoExclusive = k, exclusive
		}
	}
	lowerHi := func(k string) {
		if k != "" && (r.Hi == "" || k < r.Hi) {
			r.Hi = k
		}
	}
	raiseLo(req.Prefix, false)
	raiseLo(req.Start, false)
	if req.StartAfter != "" {
		raiseLo(req.StartAfter, true)
	}
	lowerHi(req.End)
	if req.Prefix != "" {
		lowerHi(fsm.PrefixEnd(req.Prefix))
	}
	if last != "" {
		if req.Reverse {
			lowerHi(last)
		} else {
			raiseLo(last, true)
		}
	}
	return r
}

func (o *objectService) GetObject(ctx context.Context, req *cairnv1.GetObjectRequest) (*cairnv1.GetObjectResponse, error) {
	if err := checkObject(req.Namespace, req.Object); err != nil {
		return nil, err
	}
	h, err := o.s.readBarrier(ctx, req.Consistency, req.MaxStalenessMs)
	if err != nil {
		return nil, err
	}
	info, err := o.s.state.Object(req.Namespace, req.Object)
	if err != nil {
		return nil, err
	}
	return &cairnv1.GetObjectResponse{Header: h, Object: toAPIObject(info)}, nil
}

func (o *objectService) DeleteObject(ctx context.Context, req *cairnv1.DeleteObjectRequest) (*cairnv1.DeleteObjectResponse, error) {
	if err := checkObject(req.Namespace, req.Object); err != nil {
		return nil, err
	}
	res, err := o.s.propose(ctx, &raftcmdv1.Command{RequestId: req.RequestId, Op: &raftcmdv1.Command_DeleteObject{
		DeleteObject: &raftcmdv1.DeleteObject{Namespace: req.Namespace, Object: req.Object},
	}})
	if err != nil {
		return nil, err
	}
	d := res.GetDeleteObject()
	return &cairnv1.DeleteObjectResponse{Header: o.s.writeHeader(res), DeletedKeys: d.GetDeletedKeys(), DeletedAlarms: d.GetDeletedAlarms()}, nil
}

func (o *objectService) ListObjects(ctx context.Context, req *cairnv1.ListObjectsRequest) (*cairnv1.ListObjectsResponse, error) {
	if err := checkNamespace(req.Namespace); err != nil {
		return nil, err
	}
	limit, err := listLimit(req.Limit)
	if err != nil {
		return nil, err
	}
	if len(req.Prefix) > fsm.MaxObjectNameBytes {
		return nil, invalidf("prefix is %d bytes, limit is %d", len(req.Prefix), fsm.MaxObjectNameBytes)
	}
	after, err := parsePageToken('o', req.PageToken)
	if err != nil {
		return nil, err
	}
	h, err := o.s.readBarrier(ctx, req.Consistency, req.MaxStalenessMs)
	if err != nil {
		return nil, err
	}
	objs, more, err := o.s.state.Objects(req.Namespace, req.Prefix, after, limit)
	if err != nil {
		return nil, err
	}
	resp := &cairnv1.ListObjectsResponse{Header: h, Objects: make([]*cairnv1.ObjectInfo, 0, len(objs))}
	for _, obj := range objs {
		resp.Objects = append(resp.Objects, toAPIObject(obj))
	}
	if more && len(objs) > 0 {
		resp.NextPageToken = pageToken('o', objs[len(objs)-1].Name)
	}
	return resp, nil
}

// conditional runs op only if key's mod_revision equals expected (0: the
// key must not exist), as one transaction. A mismatch is
// revisionMismatch, naming the key's current revision.
func (s *Server) conditional(ctx context.Context, ns, object, key string, expected uint64, requestID string, op *raftcmdv1.TxnOp) (*raftcmdv1.Result, error) {
	res, err := s.propose(ctx, &raftcmdv1.Command{RequestId: requestID, Op: &raftcmdv1.Command_Txn{Txn: &raftcmdv1.Txn{
		Namespace: ns,
		Compares: []*raftcmdv1.Compare{{
			Object: object, Key: key, Target: raftcmdv1.CompareTarget_COMPARE_TARGET_MOD_REVISION,
			Relation: raftcmdv1.Relation_RELATION_EQUAL, Revision: expected,
		}},
		Success: []*raftcmdv1.TxnOp{op},
		Failure: []*raftcmdv1.TxnOp{{Op: &raftcmdv1.TxnOp_Get{Get: &raftcmdv1.TxnGet{Object: object, Key: key}}}},
	}}})
	if err != nil {
		return nil, err
	}
	if t := res.GetTxn(); !t.GetSucceeded() {
		var current *raftcmdv1.StoredKey
		if rs := t.GetResults(); len(rs) == 1 {
			current = rs[0].GetGet().GetKv()
		}
		return nil, revisionMismatch(key, expected, current)
	}
	return res, nil
}
