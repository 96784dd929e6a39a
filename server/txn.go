package server

import (
	"context"
	"fmt"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
)

// Txn validates a transaction, proposes it as one command and answers
// which branch ran and each op's result.
func (o *objectService) Txn(ctx context.Context, req *cairnv1.TxnRequest) (*cairnv1.TxnResponse, error) {
	txn, err := o.s.txnCommand(req)
	if err != nil {
		return nil, err
	}
	res, err := o.s.propose(ctx, &raftcmdv1.Command{RequestId: req.RequestId, Op: &raftcmdv1.Command_Txn{Txn: txn}})
	if err != nil {
		return nil, err
	}
	return toAPITxnResponse(o.s.writeHeader(res), res)
}

// txnCommand checks a public transaction against every limit and turns
// it into the log's Txn.
func (s *Server) txnCommand(req *cairnv1.TxnRequest) (*raftcmdv1.Txn, error) {
	if err := checkNamespace(req.Namespace); err != nil {
		return nil, err
	}
	for _, l := range []struct {
		field string
		n     int
	}{{"compares", len(req.Compares)}, {"success", len(req.Success)}, {"failure", len(req.Failure)}} {
		if l.n > s.cfg.MaxTxnOps {
			return nil, invalidf("%s holds %d entries, limit is %d", l.field, l.n, s.cfg.MaxTxnOps)
		}
	}
	txn := &raftcmdv1.Txn{Namespace: req.Namespace}
	size := 0
	for i, c := range req.Compares {
		rc, n, err := s.compare(fmt.Sprintf("compares[%d]", i), c)
		if err != nil {
			return nil, err
		}
		size += n
		txn.Compares = append(txn.Compares, rc)
	}
	for _, branch := range []struct {
		field string
		ops   []*cairnv1.TxnOp
		out   *[]*raftcmdv1.TxnOp
	}{{"success", req.Success, &txn.Success}, {"failure", req.Failure, &txn.Failure}} {
		for i, op := range branch.ops {
			rop, n, err := s.txnOp(fmt.Sprintf("%s[%d]", branch.field, i), op)
			if err != nil {
				return nil, err
			}
			size += n
			*branch.out = append(*branch.out, rop)
		}
	}
	if err := s.checkRequestBytes(size); err != nil {
		return nil, err
	}
	return txn, nil
}

// compare converts one compare; n is the bytes it carries.
func (s *Server) compare(field string, c *cairnv1.Compare) (*raftcmdv1.Compare, int, error) {
	if err := fsm.ValidateObjectName(c.GetObject()); err != nil {
		return nil, 0, invalidf("%s.%s", field, userMessage(err))
	}
	rc := &raftcmdv1.Compare{Object: c.Object, Key: c.Key}
	switch c.Relation {
	case cairnv1.Relation_RELATION_UNSPECIFIED, cairnv1.Relation_RELATION_EQUAL:
		rc.Relation = raftcmdv1.Relation_RELATION_EQUAL
	case cairnv1.Relation_RELATION_NOT_EQUAL:
		rc.Relation = raftcmdv1.Relation_RELATION_NOT_EQUAL
	case cairnv1.Relation_RELATION_LESS:
		rc.Relation = raftcmdv1.Relation_RELATION_LESS
	case cairnv1.Relation_RELATION_GREATER:
		rc.Relation = raftcmdv1.Relation_RELATION_GREATER
	default:
		return nil, 0, invalidf("%s.relation %d is unknown", field, c.Relation)
	}
	ordered := rc.Relation == raftcmdv1.Relation_RELATION_LESS || rc.Relation == raftcmdv1.Relation_RELATION_GREATER
	needKey := true
	switch t := c.Target.(type) {
	case *cairnv1.Compare_ModRevision:
		rc.Target, rc.Revision = raftcmdv1.CompareTarget_COMPARE_TARGET_MOD_REVISION, t.ModRevision
	case *cairnv1.Compare_CreateRevision:
		rc.Target, rc.Revision = raftcmdv1.CompareTarget_COMPARE_TARGET_CREATE_REVISION, t.CreateRevision
	case *cairnv1.Compare_ObjectRevision:
		rc.Target, rc.Revision = raftcmdv1.CompareTarget_COMPARE_TARGET_OBJECT_REVISION, t.ObjectRevision
		needKey = false
	case *cairnv1.Compare_Value, *cairnv1.Compare_BinaryValue:
		if ordered {
			return nil, 0, invalidf("%s: a value compares with EQUAL or NOT_EQUAL only", field)
		}
		_, isBinary := t.(*cairnv1.Compare_BinaryValue)
		v, enc, err := encodeValue(field, c.GetValue(), c.GetBinaryValue(), isBinary)
		if err != nil {
			return nil, 0, err
		}
		if err := s.checkValue(field+".value", v); err != nil {
			return nil, 0, err
		}
		rc.Target, rc.Value, rc.Encoding = raftcmdv1.CompareTarget_COMPARE_TARGET_VALUE, v, enc
	case *cairnv1.Compare_Exists:
		if ordered {
			return nil, 0, invalidf("%s: exists compares with EQUAL or NOT_EQUAL only", field)
		}
		rc.Target = raftcmdv1.CompareTarget_COMPARE_TARGET_EXISTS
		if !t.Exists { // "exists == false" is "not exists"
			if rc.Relation == raftcmdv1.Relation_RELATION_EQUAL {
				rc.Relation = raftcmdv1.Relation_RELATION_NOT_EQUAL
			} else {
				rc.Relation = raftcmdv1.Relation_RELATION_EQUAL
			}
		}
	default:
		return nil, 0, invalidf("%s: one of mod_revision, create_revision, value, binary_value, exists or object_revision is required", field)
	}
	if needKey {
		if err := checkKey(field+".key", c.Key); err != nil {
			return nil, 0, err
		}
	} else if c.Key != "" {
		return nil, 0, invalidf("%s: object_revision compares the object; key must be empty", field)
	}
	return rc, len(c.Object) + len(c.Key) + len(rc.Value), nil
}

// txnOp converts one op; n is the bytes it carries.
func (s *Server) txnOp(field string, op *cairnv1.TxnOp) (*raftcmdv1.TxnOp, int, error) {
	object := ""
	var out *raftcmdv1.TxnOp
	n := 0
	switch o := op.GetOp().(type) {
	case *cairnv1.TxnOp_Put:
		object = o.Put.Object
		if err := checkKey(field+".put.key", o.Put.Key); err != nil {
			return nil, 0, err
		}
		_, isBinary := o.Put.Content.(*cairnv1.PutOp_BinaryValue)
		v, enc, err := encodeValue(field+".put", o.Put.GetValue(), o.Put.GetBinaryValue(), isBinary)
		if err != nil {
			return nil, 0, err
		}
		if err := s.checkValue(field+".put.value", v); err != nil {
			return nil, 0, err
		}
		n = len(o.Put.Key) + len(v)
		out = &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_Put{Put: &raftcmdv1.TxnPut{Object: object, Put: &raftcmdv1.KeyPut{Key: o.Put.Key, Value: v, Encoding: enc}}}}
	case *cairnv1.TxnOp_Delete:
		object = o.Delete.Object
		if err := checkKey(field+".delete.key", o.Delete.Key); err != nil {
			return nil, 0, err
		}
		n = len(o.Delete.Key)
		out = &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_Delete{Delete: &raftcmdv1.TxnDelete{Object: object, Key: o.Delete.Key}}}
	case *cairnv1.TxnOp_DeleteRange:
		d := o.DeleteRange
		object = d.Object
		if err := checkBounds(field+".delete_range", d.Prefix, d.Start, d.End); err != nil {
			return nil, 0, err
		}
		out = &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_DeleteRange{DeleteRange: &raftcmdv1.TxnDeleteRange{Object: object, Prefix: d.Prefix, Start: d.Start, End: d.End}}}
	case *cairnv1.TxnOp_Get:
		object = o.Get.Object
		if err := checkKey(field+".get.key", o.Get.Key); err != nil {
			return nil, 0, err
		}
		out = &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_Get{Get: &raftcmdv1.TxnGet{Object: object, Key: o.Get.Key}}}
	case *cairnv1.TxnOp_List:
		l := o.List
		object = l.Object
		if err := checkBounds(field+".list", l.Prefix, l.Start, l.End); err != nil {
			return nil, 0, err
		}
		limit, err := listLimit(l.Limit)
		if err != nil {
			return nil, 0, invalidf("%s.list.%s", field, userMessage(err))
		}
		out = &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_List{List: &raftcmdv1.TxnList{
			Object: object, Prefix: l.Prefix, Start: l.Start, End: l.End, Limit: uint32(limit), Reverse: l.Reverse, KeysOnly: l.KeysOnly,
		}}}
	case *cairnv1.TxnOp_SetAlarm:
		a := o.SetAlarm
		object = a.Object
		spec, err := alarmSpec(field+".set_alarm", a.Object, a.Name, a.GetFireAt(), a.GetFireIn(), a.Payload, a.RepeatEvery)
		if err != nil {
			return nil, 0, err
		}
		n = len(a.Name) + len(a.Payload)
		out = &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_SetAlarm{SetAlarm: spec}}
	case *cairnv1.TxnOp_DeleteAlarm:
		object = o.DeleteAlarm.Object
		name := fsm.AlarmName(o.DeleteAlarm.Name)
		if err := fsm.ValidateAlarmName(field+".delete_alarm.name", name); err != nil {
			return nil, 0, err
		}
		out = &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_DeleteAlarm{DeleteAlarm: &raftcmdv1.AlarmRef{Object: object, Name: name}}}
	default:
		return nil, 0, invalidf("%s: one of put, delete, delete_range, get, list, set_alarm or delete_alarm is required", field)
	}
	if err := fsm.ValidateObjectName(object); err != nil {
		return nil, 0, invalidf("%s.%s", field, userMessage(err))
	}
	return out, n + len(object), nil
}

func checkBounds(field, prefix, start, end string) error {
	for _, b := range []struct{ name, key string }{{"prefix", prefix}, {"start", start}, {"end", end}} {
		if err := checkBound(field+"."+b.name, b.key); err != nil {
			return err
		}
	}
	return nil
}

// toAPITxnResponse turns the FSM's TxnResult into the public response.
func toAPITxnResponse(h *cairnv1.ResponseHeader, res *raftcmdv1.Result) (*cairnv1.TxnResponse, error) {
	tr := res.GetTxn()
	out := &cairnv1.TxnResponse{Header: h, Succeeded: tr.GetSucceeded(), Revision: res.GetRevision()}
	for _, r := range tr.GetResults() {
		var or *cairnv1.TxnOpResult
		switch x := r.Result.(type) {
		case *raftcmdv1.TxnOpResult_Put:
			or = &cairnv1.TxnOpResult{Result: &cairnv1.TxnOpResult_Put{Put: &cairnv1.PutOpResult{Created: x.Put.Created}}}
		case *raftcmdv1.TxnOpResult_Delete:
			or = &cairnv1.TxnOpResult{Result: &cairnv1.TxnOpResult_Delete{Delete: &cairnv1.DeleteOpResult{Deleted: x.Delete.Deleted}}}
		case *raftcmdv1.TxnOpResult_DeleteRange:
			or = &cairnv1.TxnOpResult{Result: &cairnv1.TxnOpResult_DeleteRange{DeleteRange: &cairnv1.DeleteOpResult{Deleted: x.DeleteRange.Deleted}}}
		case *raftcmdv1.TxnOpResult_Get:
			g := &cairnv1.GetOpResult{}
			if x.Get.Kv != nil {
				kv, err := storedToAPI(x.Get.Kv, false)
				if err != nil {
					return nil, err
				}
				g.Kv = kv
			}
			or = &cairnv1.TxnOpResult{Result: &cairnv1.TxnOpResult_Get{Get: g}}
		case *raftcmdv1.TxnOpResult_List:
			l := &cairnv1.ListOpResult{More: x.List.More}
			for _, sk := range x.List.Kvs {
				kv, err := storedToAPI(sk, sk.Value == nil)
				if err != nil {
					return nil, err
				}
				l.Kvs = append(l.Kvs, kv)
			}
			or = &cairnv1.TxnOpResult{Result: &cairnv1.TxnOpResult_List{List: l}}
		case *raftcmdv1.TxnOpResult_SetAlarm:
			or = &cairnv1.TxnOpResult{Result: &cairnv1.TxnOpResult_SetAlarm{SetAlarm: &cairnv1.SetAlarmOpResult{Created: x.SetAlarm.GetCreated()}}}
		case *raftcmdv1.TxnOpResult_DeleteAlarm:
			or = &cairnv1.TxnOpResult{Result: &cairnv1.TxnOpResult_DeleteAlarm{DeleteAlarm: &cairnv1.DeleteAlarmOpResult{Deleted: x.DeleteAlarm.GetDeleted()}}}
		default:
			return nil, fmt.Errorf("server: unknown txn op result %T", x)
		}
		out.Results = append(out.Results, or)
	}
	return out, nil
}

func storedToAPI(sk *raftcmdv1.StoredKey, keysOnly bool) (*cairnv1.KeyValue, error) {
	return toAPIKeyValue(fsm.KeyValue{
		Key: sk.Key, Value: sk.Value, Encoding: sk.Encoding, CreateRevision: sk.CreateRevision, ModRevision: sk.ModRevision,
	}, keysOnly)
}
