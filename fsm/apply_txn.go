package fsm

import (
	"bytes"
	"fmt"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
)

// Transaction limits fixed by the log format. The server enforces tighter,
// configurable ones before proposing.
const (
	// MaxTxnListLimit is the largest page a list op may ask for.
	MaxTxnListLimit = 1000
	// txnListMaxBytes ends a list op's page early once it holds this many
	// key and value bytes.
	txnListMaxBytes = 4 << 20
)

// applyTxn evaluates every compare against the state before the
// transaction, then runs the success or the failure ops in order, each
// seeing the writes of the ops before it.
func (a *applier) applyTxn(t *raftcmdv1.Txn) (*raftcmdv1.Result, error) {
	if err := ValidateNamespace(t.GetNamespace()); err != nil {
		return nil, err
	}
	ns, err := getNamespace(a.tx, t.Namespace)
	if err != nil {
		return nil, err
	}
	if err := validateTxn(t); err != nil {
		return nil, err
	}
	if ns.GetSettings().GetMaxObjectBytes() > 0 {
		a.keepUndo() // finishObjects may refuse it after its ops wrote
	}
	ok := true
	for _, c := range t.Compares {
		if !a.compare(ns, c) {
			ok = false
		}
	}
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	res := &raftcmdv1.TxnResult{Succeeded: ok, Results: make([]*raftcmdv1.TxnOpResult, 0, len(ops))}
	for _, op := range ops {
		r, err := a.txnOp(ns, op)
		if err != nil {
			return nil, err
		}
		res.Results = append(res.Results, r)
	}
	if err := a.finishObjects(); err != nil {
		return nil, err
	}
	if a.alarmsChanged {
		a.putNamespace(ns) // its alarm counts
	}
	return &raftcmdv1.Result{Result: &raftcmdv1.Result_Txn{Txn: res}}, nil
}

// validateTxn checks every compare and op before anything is read or
// written.
func validateTxn(t *raftcmdv1.Txn) error {
	for i, c := range t.Compares {
		field := fmt.Sprintf("compares[%d]", i)
		if err := ValidateObjectName(c.GetObject()); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		if c.Relation < raftcmdv1.Relation_RELATION_EQUAL || c.Relation > raftcmdv1.Relation_RELATION_GREATER {
			return fmt.Errorf("%w: %s: unknown relation %d", ErrInvalidArgument, field, c.Relation)
		}
		ordered := c.Relation == raftcmdv1.Relation_RELATION_LESS || c.Relation == raftcmdv1.Relation_RELATION_GREATER
		switch c.Target {
		case raftcmdv1.CompareTarget_COMPARE_TARGET_OBJECT_REVISION:
			if c.Key != "" {
				return fmt.Errorf("%w: %s: an object revision compare names no key", ErrInvalidArgument, field)
			}
			continue
		case raftcmdv1.CompareTarget_COMPARE_TARGET_MOD_REVISION, raftcmdv1.CompareTarget_COMPARE_TARGET_CREATE_REVISION:
		case raftcmdv1.CompareTarget_COMPARE_TARGET_VALUE:
			if err := validateEncoding(field, c.Encoding); err != nil {
				return err
			}
			fallthrough
		case raftcmdv1.CompareTarget_COMPARE_TARGET_EXISTS:
			if ordered {
				return fmt.Errorf("%w: %s: %s compares with EQUAL or NOT_EQUAL only", ErrInvalidArgument, field, c.Target)
			}
		default:
			return fmt.Errorf("%w: %s: unknown compare target %d", ErrInvalidArgument, field, c.Target)
		}
		if err := ValidateKey(field+".key", c.Key); err != nil {
			return err
		}
	}
	for _, branch := range []struct {
		name string
		ops  []*raftcmdv1.TxnOp
	}{{"success", t.Success}, {"failure", t.Failure}} {
		for i, op := range branch.ops {
			if err := validateTxnOp(fmt.Sprintf("%s[%d]", branch.name, i), op); err != nil {
				return err
			}
		}
	}
	return nil
}

func validateTxnOp(field string, op *raftcmdv1.TxnOp) error {
	var object string
	var keys, bounds []string
	switch o := op.GetOp().(type) {
	case *raftcmdv1.TxnOp_Put:
		object, keys = o.Put.GetObject(), []string{o.Put.GetPut().GetKey()}
		if err := validateEncoding(field, o.Put.GetPut().GetEncoding()); err != nil {
			return err
		}
	case *raftcmdv1.TxnOp_Delete:
		object, keys = o.Delete.GetObject(), []string{o.Delete.GetKey()}
	case *raftcmdv1.TxnOp_Get:
		object, keys = o.Get.GetObject(), []string{o.Get.GetKey()}
	case *raftcmdv1.TxnOp_DeleteRange:
		d := o.DeleteRange
		object, bounds = d.GetObject(), []string{d.GetPrefix(), d.GetStart(), d.GetEnd()}
	case *raftcmdv1.TxnOp_List:
		l := o.List
		object, bounds = l.GetObject(), []string{l.GetPrefix(), l.GetStart(), l.GetEnd()}
		if l.Limit < 1 || l.Limit > MaxTxnListLimit {
			return fmt.Errorf("%w: %s: list limit is %d, allowed are 1 to %d", ErrInvalidArgument, field, l.Limit, MaxTxnListLimit)
		}
	case *raftcmdv1.TxnOp_SetAlarm:
		object = o.SetAlarm.GetObject()
		if err := ValidateAlarmSpec(field+".set_alarm", o.SetAlarm); err != nil {
			return err
		}
	case *raftcmdv1.TxnOp_DeleteAlarm:
		object = o.DeleteAlarm.GetObject()
		if err := ValidateAlarmName(field+".delete_alarm.name", o.DeleteAlarm.GetName()); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: %s: no operation", ErrInvalidArgument, field)
	}
	if err := ValidateObjectName(object); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	for _, k := range keys {
		if err := ValidateKey(field+".key", k); err != nil {
			return err
		}
	}
	for _, b := range bounds {
		if len(b) > MaxKeyBytes {
			return fmt.Errorf("%w: %s: a bound is %d bytes, limit is %d", ErrInvalidArgument, field, len(b), MaxKeyBytes)
		}
	}
	return nil
}

// compare evaluates one compare against the current state.
func (a *applier) compare(ns *raftcmdv1.Namespace, c *raftcmdv1.Compare) bool {
	o := a.object(ns, c.Object)
	if c.Target == raftcmdv1.CompareTarget_COMPARE_TARGET_OBJECT_REVISION {
		var rev uint64
		if o.existed {
			rev = o.rec.revision
		}
		return relate(rev, c.Revision, c.Relation)
	}
	rec, found := o.get(c.Key)
	switch c.Target {
	case raftcmdv1.CompareTarget_COMPARE_TARGET_MOD_REVISION:
		return relate(rec.modRevision, c.Revision, c.Relation)
	case raftcmdv1.CompareTarget_COMPARE_TARGET_CREATE_REVISION:
		return relate(rec.createRevision, c.Revision, c.Relation)
	case raftcmdv1.CompareTarget_COMPARE_TARGET_VALUE:
		eq := found && rec.encoding == c.Encoding && bytes.Equal(rec.value, c.Value)
		return eq == (c.Relation == raftcmdv1.Relation_RELATION_EQUAL)
	case raftcmdv1.CompareTarget_COMPARE_TARGET_EXISTS:
		return found == (c.Relation == raftcmdv1.Relation_RELATION_EQUAL)
	}
	panic(fmt.Sprintf("fsm: compare target %v passed validation", c.Target))
}

func relate(have, want uint64, r raftcmdv1.Relation) bool {
	switch r {
	case raftcmdv1.Relation_RELATION_EQUAL:
		return have == want
	case raftcmdv1.Relation_RELATION_NOT_EQUAL:
		return have != want
	case raftcmdv1.Relation_RELATION_LESS:
		return have < want
	case raftcmdv1.Relation_RELATION_GREATER:
		return have > want
	}
	panic(fmt.Sprintf("fsm: relation %v passed validation", r))
}

// txnRange turns an op's prefix and [start, end) into a Range.
func txnRange(prefix, start, end string) Range {
	r := Range{Lo: prefix, Hi: end}
	if start > r.Lo {
		r.Lo = start
	}
	if prefix != "" {
		if pe := PrefixEnd(prefix); pe != "" && (r.Hi == "" || pe < r.Hi) {
			r.Hi = pe
		}
	}
	return r
}

// txnOp runs one op.
func (a *applier) txnOp(ns *raftcmdv1.Namespace, op *raftcmdv1.TxnOp) (*raftcmdv1.TxnOpResult, error) {
	switch o := op.Op.(type) {
	case *raftcmdv1.TxnOp_Put:
		p := o.Put.Put
		created := a.putKey(a.object(ns, o.Put.Object), p.Key, p.Value, p.Encoding)
		return &raftcmdv1.TxnOpResult{Result: &raftcmdv1.TxnOpResult_Put{Put: &raftcmdv1.PutResult{Created: created}}}, nil
	case *raftcmdv1.TxnOp_Delete:
		var n uint64
		if a.deleteKey(a.object(ns, o.Delete.Object), o.Delete.Key) {
			n = 1
		}
		return &raftcmdv1.TxnOpResult{Result: &raftcmdv1.TxnOpResult_Delete{Delete: &raftcmdv1.DeleteResult{Deleted: n}}}, nil
	case *raftcmdv1.TxnOp_DeleteRange:
		d := o.DeleteRange
		obj := a.object(ns, d.Object)
		var n uint64
		for _, k := range obj.keysInRange(txnRange(d.Prefix, d.Start, d.End)) {
			a.deleteKey(obj, k)
			n++
		}
		return &raftcmdv1.TxnOpResult{Result: &raftcmdv1.TxnOpResult_DeleteRange{DeleteRange: &raftcmdv1.DeleteResult{Deleted: n}}}, nil
	case *raftcmdv1.TxnOp_Get:
		g := &raftcmdv1.GetResult{}
		if rec, found := a.object(ns, o.Get.Object).get(o.Get.Key); found {
			g.Kv = &raftcmdv1.StoredKey{Key: o.Get.Key, Value: bytes.Clone(rec.value), Encoding: rec.encoding,
				CreateRevision: rec.createRevision, ModRevision: rec.modRevision}
			if g.Kv.Value == nil {
				g.Kv.Value = []byte{}
			}
		}
		return &raftcmdv1.TxnOpResult{Result: &raftcmdv1.TxnOpResult_Get{Get: g}}, nil
	case *raftcmdv1.TxnOp_List:
		l := o.List
		obj := a.object(ns, l.Object)
		r := txnRange(l.Prefix, l.Start, l.End)
		r.Reverse, r.Limit, r.MaxBytes, r.KeysOnly = l.Reverse, int(l.Limit), txnListMaxBytes, l.KeysOnly
		kvs, more, err := listRange(obj.sb.Cursor(), obj.prefix, r)
		if err != nil {
			panic(err)
		}
		lr := &raftcmdv1.ListResult{More: more}
		for _, kv := range kvs {
			lr.Kvs = append(lr.Kvs, &raftcmdv1.StoredKey{Key: kv.Key, Value: kv.Value, Encoding: kv.Encoding,
				CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision})
		}
		return &raftcmdv1.TxnOpResult{Result: &raftcmdv1.TxnOpResult_List{List: lr}}, nil
	case *raftcmdv1.TxnOp_SetAlarm:
		r := a.setAlarm(ns, o.SetAlarm)
		return &raftcmdv1.TxnOpResult{Result: &raftcmdv1.TxnOpResult_SetAlarm{SetAlarm: &raftcmdv1.AlarmResult{Created: r.Created}}}, nil
	case *raftcmdv1.TxnOp_DeleteAlarm:
		r := a.deleteAlarm(ns, o.DeleteAlarm)
		return &raftcmdv1.TxnOpResult{Result: &raftcmdv1.TxnOpResult_DeleteAlarm{DeleteAlarm: r}}, nil
	}
	panic(fmt.Sprintf("fsm: txn op %T passed validation", op.Op))
}
