package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"google.golang.org/protobuf/proto"
)

// Tests of Txn: every compare target and relation, validation, every op,
// branch choice, atomicity across objects, revisions and the summaries
// (object counts, shard stats) a transaction keeps.

// Short names for the enums the tables below use.
const (
	tgtMod    = raftcmdv1.CompareTarget_COMPARE_TARGET_MOD_REVISION
	tgtCreate = raftcmdv1.CompareTarget_COMPARE_TARGET_CREATE_REVISION
	tgtValue  = raftcmdv1.CompareTarget_COMPARE_TARGET_VALUE
	tgtExists = raftcmdv1.CompareTarget_COMPARE_TARGET_EXISTS
	tgtObjRev = raftcmdv1.CompareTarget_COMPARE_TARGET_OBJECT_REVISION

	relEq  = raftcmdv1.Relation_RELATION_EQUAL
	relNe  = raftcmdv1.Relation_RELATION_NOT_EQUAL
	relLt  = raftcmdv1.Relation_RELATION_LESS
	relGt  = raftcmdv1.Relation_RELATION_GREATER
	encBin = raftcmdv1.ValueEncoding_VALUE_ENCODING_BINARY
	encJS  = raftcmdv1.ValueEncoding_VALUE_ENCODING_JSON
)

// Txn builders.

func cmdTxn(ns string, compares []*raftcmdv1.Compare, success, failure []*raftcmdv1.TxnOp) *raftcmdv1.Command {
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_Txn{Txn: &raftcmdv1.Txn{
		Namespace: ns, Compares: compares, Success: success, Failure: failure,
	}}}
}

func cmps(c ...*raftcmdv1.Compare) []*raftcmdv1.Compare { return c }
func ops(o ...*raftcmdv1.TxnOp) []*raftcmdv1.TxnOp      { return o }

// cmpRev compares a key's mod or create revision.
func cmpRev(target raftcmdv1.CompareTarget, object, key string, rel raftcmdv1.Relation, rev uint64) *raftcmdv1.Compare {
	return &raftcmdv1.Compare{Object: object, Key: key, Target: target, Relation: rel, Revision: rev}
}

func cmpValue(object, key string, rel raftcmdv1.Relation, value string, enc raftcmdv1.ValueEncoding) *raftcmdv1.Compare {
	return &raftcmdv1.Compare{Object: object, Key: key, Target: tgtValue, Relation: rel, Value: []byte(value), Encoding: enc}
}

func cmpExists(object, key string, rel raftcmdv1.Relation) *raftcmdv1.Compare {
	return &raftcmdv1.Compare{Object: object, Key: key, Target: tgtExists, Relation: rel}
}

func cmpObjRev(object string, rel raftcmdv1.Relation, rev uint64) *raftcmdv1.Compare {
	return &raftcmdv1.Compare{Object: object, Target: tgtObjRev, Relation: rel, Revision: rev}
}

func opPutEnc(object, key, value string, enc raftcmdv1.ValueEncoding) *raftcmdv1.TxnOp {
	return &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_Put{Put: &raftcmdv1.TxnPut{
		Object: object, Put: &raftcmdv1.KeyPut{Key: key, Value: []byte(value), Encoding: enc},
	}}}
}

func opPut(object, key, value string) *raftcmdv1.TxnOp { return opPutEnc(object, key, value, encBin) }

func opDel(object, key string) *raftcmdv1.TxnOp {
	return &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_Delete{Delete: &raftcmdv1.TxnDelete{Object: object, Key: key}}}
}

func opDelRange(object, prefix, start, end string) *raftcmdv1.TxnOp {
	return &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_DeleteRange{DeleteRange: &raftcmdv1.TxnDeleteRange{
		Object: object, Prefix: prefix, Start: start, End: end,
	}}}
}

func opGet(object, key string) *raftcmdv1.TxnOp {
	return &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_Get{Get: &raftcmdv1.TxnGet{Object: object, Key: key}}}
}

// txnList describes a list op; opList turns it into one.
type txnList struct {
	prefix, start, end string
	limit              uint32
	reverse, keysOnly  bool
}

func opList(object string, l txnList) *raftcmdv1.TxnOp {
	return &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_List{List: &raftcmdv1.TxnList{
		Object: object, Prefix: l.prefix, Start: l.start, End: l.end, Limit: l.limit, Reverse: l.reverse, KeysOnly: l.keysOnly,
	}}}
}

// mustTxn applies a Txn command that must succeed (as a command; its
// compares may fail) and returns its TxnResult.
func mustTxn(t testing.TB, f *FSM, cmd *raftcmdv1.Command) *raftcmdv1.TxnResult {
	t.Helper()
	res := mustApply1(t, f, cmd)
	tr := res.GetTxn()
	if tr == nil {
		t.Fatalf("txn answered %v, want a TxnResult", res)
	}
	if n := len(cmd.GetTxn().Success); tr.Succeeded && len(tr.Results) != n {
		t.Fatalf("succeeded txn has %d results for %d success ops", len(tr.Results), n)
	}
	if n := len(cmd.GetTxn().Failure); !tr.Succeeded && len(tr.Results) != n {
		t.Fatalf("failed txn has %d results for %d failure ops", len(tr.Results), n)
	}
	return tr
}

// storedKeys renders txn read results as "key=value@create/mod" for
// comparing with a want list.
func storedKeys(kvs []*raftcmdv1.StoredKey) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = fmt.Sprintf("%s=%s@%d/%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision)
	}
	return out
}

// visibleState is dumpState without its first line (applied index and
// log time).
func visibleState(t testing.TB, f *FSM) string {
	t.Helper()
	_, rest, _ := strings.Cut(dumpState(t, f), "\n")
	return rest
}

// mustTxnFSM returns an FSM with namespace "n" (index 1) and object "o"
// holding, after indexes 2 and 3:
//
//	k = "v2" binary, created 2, modified 3
//	j = {"a":1} JSON, created 2, modified 2
//	b = {"a":1} binary (same bytes as j), created 2, modified 2
//	e = "" binary, created 2, modified 2
//
// so that o's revision is 3 and its creation 2.
func mustTxnFSM(t testing.TB) *FSM {
	t.Helper()
	f := mustNew(t)
	mustApply1(t, f, cmdPutNamespace("n", 0))
	mustApply1(t, f, cmdBatch("n", "o", []*raftcmdv1.KeyPut{
		kput("k", "v1"),
		{Key: "j", Value: []byte(`{"a":1}`), Encoding: encJS},
		kput("b", `{"a":1}`),
		kput("e", ""),
	}))
	mustApply1(t, f, cmdPut("n", "o", "k", "v2"))
	return f
}

func TestTxnCompare(t *testing.T) {
	f := mustTxnFSM(t)
	tests := []struct {
		name string
		c    *raftcmdv1.Compare
		want bool
	}{
		// MOD_REVISION: k was modified at 3.
		{"mod eq", cmpRev(tgtMod, "o", "k", relEq, 3), true},
		{"mod eq other", cmpRev(tgtMod, "o", "k", relEq, 2), false},
		{"mod ne", cmpRev(tgtMod, "o", "k", relNe, 2), true},
		{"mod ne same", cmpRev(tgtMod, "o", "k", relNe, 3), false},
		{"mod less", cmpRev(tgtMod, "o", "k", relLt, 4), true},
		{"mod less same", cmpRev(tgtMod, "o", "k", relLt, 3), false},
		{"mod greater", cmpRev(tgtMod, "o", "k", relGt, 2), true},
		{"mod greater same", cmpRev(tgtMod, "o", "k", relGt, 3), false},
		{"mod missing key eq 0", cmpRev(tgtMod, "o", "nope", relEq, 0), true},
		{"mod missing key ne 0", cmpRev(tgtMod, "o", "nope", relNe, 0), false},
		{"mod missing key less 1", cmpRev(tgtMod, "o", "nope", relLt, 1), true},
		{"mod missing key greater 0", cmpRev(tgtMod, "o", "nope", relGt, 0), false},
		{"mod missing object eq 0", cmpRev(tgtMod, "none", "k", relEq, 0), true},
		// CREATE_REVISION: k was created at 2.
		{"create eq", cmpRev(tgtCreate, "o", "k", relEq, 2), true},
		{"create eq mod revision", cmpRev(tgtCreate, "o", "k", relEq, 3), false},
		{"create ne", cmpRev(tgtCreate, "o", "k", relNe, 3), true},
		{"create ne same", cmpRev(tgtCreate, "o", "k", relNe, 2), false},
		{"create less", cmpRev(tgtCreate, "o", "k", relLt, 3), true},
		{"create less same", cmpRev(tgtCreate, "o", "k", relLt, 2), false},
		{"create greater", cmpRev(tgtCreate, "o", "k", relGt, 1), true},
		{"create greater same", cmpRev(tgtCreate, "o", "k", relGt, 2), false},
		{"create missing key eq 0", cmpRev(tgtCreate, "o", "nope", relEq, 0), true},
		{"create missing key ne 0", cmpRev(tgtCreate, "o", "nope", relNe, 0), false},
		{"create missing key less 1", cmpRev(tgtCreate, "o", "nope", relLt, 1), true},
		{"create missing key greater 0", cmpRev(tgtCreate, "o", "nope", relGt, 0), false},
		{"create missing object eq 0", cmpRev(tgtCreate, "none", "k", relEq, 0), true},
		// VALUE: value and encoding must both match.
		{"value eq", cmpValue("o", "k", relEq, "v2", encBin), true},
		{"value eq old value", cmpValue("o", "k", relEq, "v1", encBin), false},
		{"value ne", cmpValue("o", "k", relNe, "v1", encBin), true},
		{"value ne same", cmpValue("o", "k", relNe, "v2", encBin), false},
		{"value eq other encoding", cmpValue("o", "k", relEq, "v2", encJS), false},
		{"value ne other encoding", cmpValue("o", "k", relNe, "v2", encJS), true},
		{"json eq json", cmpValue("o", "j", relEq, `{"a":1}`, encJS), true},
		{"json eq binary same bytes", cmpValue("o", "j", relEq, `{"a":1}`, encBin), false},
		{"json ne binary same bytes", cmpValue("o", "j", relNe, `{"a":1}`, encBin), true},
		{"binary eq json same bytes", cmpValue("o", "b", relEq, `{"a":1}`, encJS), false},
		{"binary eq binary", cmpValue("o", "b", relEq, `{"a":1}`, encBin), true},
		{"empty value eq empty", cmpValue("o", "e", relEq, "", encBin), true},
		{"empty value ne empty", cmpValue("o", "e", relNe, "", encBin), false},
		{"value missing key eq empty", cmpValue("o", "nope", relEq, "", encBin), false},
		{"value missing key eq", cmpValue("o", "nope", relEq, "v2", encBin), false},
		{"value missing key ne", cmpValue("o", "nope", relNe, "v2", encBin), true},
		{"value missing object ne", cmpValue("none", "k", relNe, "v2", encBin), true},
		// EXISTS: EQUAL means exists, NOT_EQUAL missing.
		{"exists eq", cmpExists("o", "k", relEq), true},
		{"exists ne", cmpExists("o", "k", relNe), false},
		{"exists eq empty value", cmpExists("o", "e", relEq), true},
		{"exists eq missing", cmpExists("o", "nope", relEq), false},
		{"exists ne missing", cmpExists("o", "nope", relNe), true},
		{"exists ne missing object", cmpExists("none", "k", relNe), true},
		// OBJECT_REVISION: o's revision is 3; a missing object's is 0.
		{"object eq", cmpObjRev("o", relEq, 3), true},
		{"object eq creation", cmpObjRev("o", relEq, 2), false},
		{"object ne", cmpObjRev("o", relNe, 2), true},
		{"object ne same", cmpObjRev("o", relNe, 3), false},
		{"object less", cmpObjRev("o", relLt, 4), true},
		{"object less same", cmpObjRev("o", relLt, 3), false},
		{"object greater", cmpObjRev("o", relGt, 2), true},
		{"object greater same", cmpObjRev("o", relGt, 3), false},
		{"object missing eq 0", cmpObjRev("none", relEq, 0), true},
		{"object missing ne 0", cmpObjRev("none", relNe, 0), false},
		{"object missing less 1", cmpObjRev("none", relLt, 1), true},
		{"object missing greater 0", cmpObjRev("none", relGt, 0), false},
	}
	hash := mustHash(t, f)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The branches tell which one ran: success reads k, failure
			// reads e.
			cmd := cmdTxn("n", cmps(tt.c), ops(opGet("o", "k")), ops(opGet("o", "e"), opGet("o", "nope")))
			tr := mustTxn(t, f, cmd)
			if tr.Succeeded != tt.want {
				t.Fatalf("compare %v: succeeded = %v, want %v", tt.c, tr.Succeeded, tt.want)
			}
			wantKey := "k"
			if !tt.want {
				wantKey = "e"
			}
			if got := tr.Results[0].GetGet().GetKv().GetKey(); got != wantKey {
				t.Fatalf("first op read %q, want %q (the %v branch)", got, wantKey, tt.want)
			}
			if !tt.want && tr.Results[1].GetGet().GetKv() != nil {
				t.Fatalf("get of a missing key returned %v", tr.Results[1].GetGet().GetKv())
			}
		})
	}
	if !bytes.Equal(hash, mustHash(t, f)) {
		t.Fatalf("read-only transactions changed the state")
	}
	if info := mustObject(t, f, "n", "o"); info.Revision != 3 {
		t.Fatalf("read-only transactions moved the object revision to %d", info.Revision)
	}
	if _, err := f.Object("n", "none"); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("a compare on a missing object created it: %v", err)
	}
}

func TestTxnCompareAll(t *testing.T) {
	f := mustTxnFSM(t)
	tests := []struct {
		name string
		cs   []*raftcmdv1.Compare
		want bool
	}{
		{"no compares", nil, true},
		{"all hold", cmps(cmpRev(tgtMod, "o", "k", relEq, 3), cmpExists("o", "k", relEq), cmpObjRev("none", relEq, 0)), true},
		{"first fails", cmps(cmpRev(tgtMod, "o", "k", relEq, 2), cmpExists("o", "k", relEq)), false},
		{"last fails", cmps(cmpRev(tgtMod, "o", "k", relEq, 3), cmpExists("o", "k", relNe)), false},
		{"contradiction", cmps(cmpExists("o", "k", relEq), cmpExists("o", "k", relNe)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustTxn(t, f, cmdTxn("n", tt.cs, nil, nil)).Succeeded; got != tt.want {
				t.Fatalf("succeeded = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTxnRejected(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	good := opGet("o", "k")
	tests := []struct {
		name string
		cmd  *raftcmdv1.Command
		want error
	}{
		{"value less", cmdTxn("n", cmps(cmpValue("o", "k", relLt, "v", encBin)), nil, nil), ErrInvalidArgument},
		{"value greater", cmdTxn("n", cmps(cmpValue("o", "k", relGt, "v", encBin)), nil, nil), ErrInvalidArgument},
		{"exists less", cmdTxn("n", cmps(cmpExists("o", "k", relLt)), nil, nil), ErrInvalidArgument},
		{"exists greater", cmdTxn("n", cmps(cmpExists("o", "k", relGt)), nil, nil), ErrInvalidArgument},
		{"relation unspecified", cmdTxn("n", cmps(cmpRev(tgtMod, "o", "k", raftcmdv1.Relation_RELATION_UNSPECIFIED, 1)), nil, nil), ErrInvalidArgument},
		{"relation unknown", cmdTxn("n", cmps(cmpRev(tgtMod, "o", "k", raftcmdv1.Relation(5), 1)), nil, nil), ErrInvalidArgument},
		{"target unspecified", cmdTxn("n", cmps(cmpRev(raftcmdv1.CompareTarget_COMPARE_TARGET_UNSPECIFIED, "o", "k", relEq, 1)), nil, nil), ErrInvalidArgument},
		{"target unknown", cmdTxn("n", cmps(cmpRev(raftcmdv1.CompareTarget(6), "o", "k", relEq, 1)), nil, nil), ErrInvalidArgument},
		{"object revision with a key", cmdTxn("n", cmps(cmpRev(tgtObjRev, "o", "k", relEq, 3)), nil, nil), ErrInvalidArgument},
		{"compare empty object", cmdTxn("n", cmps(cmpRev(tgtMod, "", "k", relEq, 1)), nil, nil), ErrInvalidArgument},
		{"compare object too long", cmdTxn("n", cmps(cmpObjRev(long(MaxObjectNameBytes+1), relEq, 0)), nil, nil), ErrInvalidArgument},
		{"compare empty key", cmdTxn("n", cmps(cmpRev(tgtCreate, "o", "", relEq, 1)), nil, nil), ErrInvalidArgument},
		{"compare exists empty key", cmdTxn("n", cmps(cmpExists("o", "", relEq)), nil, nil), ErrInvalidArgument},
		{"compare key too long", cmdTxn("n", cmps(cmpValue("o", long(MaxKeyBytes+1), relEq, "v", encBin)), nil, nil), ErrInvalidArgument},
		{"compare value encoding unspecified", cmdTxn("n", cmps(cmpValue("o", "k", relEq, "v", raftcmdv1.ValueEncoding_VALUE_ENCODING_UNSPECIFIED)), nil, nil), ErrInvalidArgument},
		{"compare value encoding unknown", cmdTxn("n", cmps(cmpValue("o", "k", relEq, "v", raftcmdv1.ValueEncoding(3))), nil, nil), ErrInvalidArgument},
		{"second compare bad", cmdTxn("n", cmps(cmpExists("o", "k", relEq), cmpExists("o", "k", relLt)), nil, nil), ErrInvalidArgument},
		{"put empty key", cmdTxn("n", nil, ops(opPut("o", "", "v")), nil), ErrInvalidArgument},
		{"put key too long", cmdTxn("n", nil, ops(opPut("o", long(MaxKeyBytes+1), "v")), nil), ErrInvalidArgument},
		{"put empty object", cmdTxn("n", nil, ops(opPut("", "k", "v")), nil), ErrInvalidArgument},
		{"put object too long", cmdTxn("n", nil, ops(opPut(long(MaxObjectNameBytes+1), "k", "v")), nil), ErrInvalidArgument},
		{"put encoding unspecified", cmdTxn("n", nil, ops(opPutEnc("o", "k", "v", raftcmdv1.ValueEncoding_VALUE_ENCODING_UNSPECIFIED)), nil), ErrInvalidArgument},
		{"put encoding unknown", cmdTxn("n", nil, ops(opPutEnc("o", "k", "v", raftcmdv1.ValueEncoding(7))), nil), ErrInvalidArgument},
		{"put without KeyPut", cmdTxn("n", nil, ops(&raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_Put{Put: &raftcmdv1.TxnPut{Object: "o"}}}), nil), ErrInvalidArgument},
		{"delete empty key", cmdTxn("n", nil, ops(opDel("o", "")), nil), ErrInvalidArgument},
		{"delete empty object", cmdTxn("n", nil, ops(opDel("", "k")), nil), ErrInvalidArgument},
		{"get empty key", cmdTxn("n", nil, ops(opGet("o", "")), nil), ErrInvalidArgument},
		{"get key too long", cmdTxn("n", nil, ops(opGet("o", long(MaxKeyBytes+1))), nil), ErrInvalidArgument},
		{"delete range empty object", cmdTxn("n", nil, ops(opDelRange("", "", "", "")), nil), ErrInvalidArgument},
		{"delete range prefix too long", cmdTxn("n", nil, ops(opDelRange("o", long(MaxKeyBytes+1), "", "")), nil), ErrInvalidArgument},
		{"delete range start too long", cmdTxn("n", nil, ops(opDelRange("o", "", long(MaxKeyBytes+1), "")), nil), ErrInvalidArgument},
		{"delete range end too long", cmdTxn("n", nil, ops(opDelRange("o", "", "", long(MaxKeyBytes+1))), nil), ErrInvalidArgument},
		{"list empty object", cmdTxn("n", nil, ops(opList("", txnList{limit: 1})), nil), ErrInvalidArgument},
		{"list limit 0", cmdTxn("n", nil, ops(opList("o", txnList{})), nil), ErrInvalidArgument},
		{"list limit over max", cmdTxn("n", nil, ops(opList("o", txnList{limit: MaxTxnListLimit + 1})), nil), ErrInvalidArgument},
		{"list prefix too long", cmdTxn("n", nil, ops(opList("o", txnList{prefix: long(MaxKeyBytes + 1), limit: 1})), nil), ErrInvalidArgument},
		{"list start too long", cmdTxn("n", nil, ops(opList("o", txnList{start: long(MaxKeyBytes + 1), limit: 1})), nil), ErrInvalidArgument},
		{"list end too long", cmdTxn("n", nil, ops(opList("o", txnList{end: long(MaxKeyBytes + 1), limit: 1})), nil), ErrInvalidArgument},
		{"op with no operation", cmdTxn("n", nil, ops(&raftcmdv1.TxnOp{}), nil), ErrInvalidArgument},
		{"bad op after good ones", cmdTxn("n", nil, ops(opPut("o", "new", "v"), good, &raftcmdv1.TxnOp{}), nil), ErrInvalidArgument},
		// Both branches are checked, whichever would run.
		{"bad op in the branch not taken", cmdTxn("n", nil, ops(opPut("o", "new", "v")), ops(opGet("o", ""))), ErrInvalidArgument},
		{"bad op in success of a failing txn", cmdTxn("n", cmps(cmpExists("o", "nope", relEq)), ops(&raftcmdv1.TxnOp{}), ops(opPut("o", "new", "v"))), ErrInvalidArgument},
		{"empty namespace", cmdTxn("", nil, ops(good), nil), ErrInvalidArgument},
		{"bad namespace", cmdTxn("a/b", nil, ops(good), nil), ErrInvalidArgument},
		{"unknown namespace", cmdTxn("missing", nil, ops(opPut("o", "k", "v")), nil), ErrNamespaceNotFound},
		{"unknown namespace, no ops", cmdTxn("missing", nil, nil, nil), ErrNamespaceNotFound},
	}
	f := mustTxnFSM(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustReject(t, f, tt.cmd, tt.want) // also checks the state is unchanged
		})
	}
	// The limits themselves are allowed.
	tr := mustTxn(t, f, cmdTxn("n", nil, ops(
		opList("o", txnList{limit: MaxTxnListLimit}),
		opList("o", txnList{prefix: long(MaxKeyBytes), start: long(MaxKeyBytes), end: long(MaxKeyBytes), limit: 1}),
		opDelRange("o", long(MaxKeyBytes), long(MaxKeyBytes), long(MaxKeyBytes)),
		opGet("o", long(MaxKeyBytes)),
	), nil))
	if got := len(tr.Results[0].GetList().Kvs); got != 4 {
		t.Fatalf("list of o returned %d keys, want 4", got)
	}
	mustConsistent(t, f)
}

func TestTxnPutAndDelete(t *testing.T) {
	f := mustTxnFSM(t)
	idx := f.AppliedIndex() + 1
	tr := mustTxn(t, f, cmdTxn("n", nil, ops(
		opPut("o", "k", "v3"),                   // replaces
		opPutEnc("o", "new", `"x"`, encJS),      // creates
		opDel("o", "b"),                         // deletes
		opDel("o", "nope"),                      // nothing to delete
		opPut("o", "new", `"y"`),                // replaces a key created by this txn
		opPut("fresh", "a", "1"),                // creates an object
		opDel("fresh", "missing-in-new-object"), // nothing
	), nil))
	want := []string{"put created=false", "put created=true", "delete 1", "delete 0", "put created=false", "put created=true", "delete 0"}
	for i, r := range tr.Results {
		var got string
		switch {
		case r.GetPut() != nil:
			got = fmt.Sprintf("put created=%v", r.GetPut().Created)
		case r.GetDelete() != nil:
			got = fmt.Sprintf("delete %d", r.GetDelete().Deleted)
		default:
			got = fmt.Sprintf("%v", r)
		}
		if got != want[i] {
			t.Fatalf("result %d = %s, want %s", i, got, want[i])
		}
	}
	mustEqualKVs(t, mustListAll(t, f, "n", "o"), []KeyValue{
		{Key: "e", Value: []byte{}, Encoding: encBin, CreateRevision: 2, ModRevision: 2},
		{Key: "j", Value: []byte(`{"a":1}`), Encoding: encJS, CreateRevision: 2, ModRevision: 2},
		{Key: "k", Value: []byte("v3"), Encoding: encBin, CreateRevision: 2, ModRevision: idx},
		{Key: "new", Value: []byte(`"y"`), Encoding: encBin, CreateRevision: idx, ModRevision: idx},
	})
	if info := mustObject(t, f, "n", "fresh"); info.CreateRevision != idx || info.Revision != idx || info.Keys != 1 {
		t.Fatalf("fresh = %+v, want created and modified at %d with one key", info, idx)
	}
	if got := mustNamespace(t, f, "n").ObjectCount; got != 2 {
		t.Fatalf("object count = %d, want 2", got)
	}
	mustConsistent(t, f)
}

func TestTxnDeleteRange(t *testing.T) {
	keys := []string{"a", "a1", "a2", "ab", "b", "b1", "c"}
	setup := func(t *testing.T) *FSM {
		f := mustNew(t)
		mustApply1(t, f, cmdPutNamespace("n", 0))
		var kv []string
		for _, k := range keys {
			kv = append(kv, k, "v"+k)
		}
		mustApply(t, f, cmdPut("n", "o", kv...), cmdPut("n", "other", "a", "1"))
		return f
	}
	tests := []struct {
		name               string
		prefix, start, end string
		left               []string
	}{
		{"prefix", "a", "", "", []string{"b", "b1", "c"}},
		{"prefix a1 only", "a1", "", "", []string{"a", "a2", "ab", "b", "b1", "c"}},
		{"start and end", "", "a1", "b1", []string{"a", "b1", "c"}},
		{"start only", "", "b", "", []string{"a", "a1", "a2", "ab"}},
		{"end only", "", "", "a2", []string{"a2", "ab", "b", "b1", "c"}},
		{"prefix and start", "a", "a2", "", []string{"a", "a1", "b", "b1", "c"}},
		{"prefix and end", "a", "", "a2", []string{"a2", "ab", "b", "b1", "c"}},
		{"start before prefix", "b", "a", "", []string{"a", "a1", "a2", "ab", "c"}},
		{"end after prefix", "a", "", "c", []string{"b", "b1", "c"}},
		{"start after end", "", "c", "a", keys},
		{"no match", "z", "", "", keys},
		{"empty bounds: all keys", "", "", "", nil},
		{"range covering all", "", "a", "d", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t)
			before := mustNamespace(t, f, "n").ObjectCount
			tr := mustTxn(t, f, cmdTxn("n", nil, ops(opDelRange("o", tt.prefix, tt.start, tt.end)), nil))
			if got, want := tr.Results[0].GetDeleteRange().GetDeleted(), uint64(len(keys)-len(tt.left)); got != want {
				t.Fatalf("deleted = %d, want %d", got, want)
			}
			if len(tt.left) == 0 {
				if _, err := f.Object("n", "o"); !errors.Is(err, ErrObjectNotFound) {
					t.Fatalf("emptied object still there: %v", err)
				}
				if got := mustNamespace(t, f, "n").ObjectCount; got != before-1 {
					t.Fatalf("object count %d, want %d", got, before-1)
				}
			} else if got := keysOf(mustListAll(t, f, "n", "o")); !equalStrings(got, tt.left) {
				t.Fatalf("keys left = %q, want %q", got, tt.left)
			}
			if got := keysOf(mustListAll(t, f, "n", "other")); !equalStrings(got, []string{"a"}) {
				t.Fatalf("another object's keys changed: %q", got)
			}
			mustConsistent(t, f)
		})
	}

	t.Run("missing object", func(t *testing.T) {
		f := setup(t)
		hash := mustHash(t, f)
		tr := mustTxn(t, f, cmdTxn("n", nil, ops(opDelRange("none", "", "", "")), nil))
		if got := tr.Results[0].GetDeleteRange().GetDeleted(); got != 0 {
			t.Fatalf("deleted %d from a missing object", got)
		}
		if !bytes.Equal(hash, mustHash(t, f)) {
			t.Fatalf("deleting nothing changed the state")
		}
	})
	t.Run("empty then refill", func(t *testing.T) {
		f := setup(t)
		created := mustObject(t, f, "n", "o").CreateRevision
		idx := f.AppliedIndex() + 1
		mustTxn(t, f, cmdTxn("n", nil, ops(opDelRange("o", "", "", ""), opPut("o", "z", "1")), nil))
		info := mustObject(t, f, "n", "o")
		if info.Keys != 1 || info.Revision != idx || info.CreateRevision != created {
			t.Fatalf("object = %+v, want one key, revision %d, still created at %d", info, idx, created)
		}
		if got := mustNamespace(t, f, "n").ObjectCount; got != 2 {
			t.Fatalf("object count %d, want 2", got)
		}
		mustConsistent(t, f)
	})
	t.Run("create then empty", func(t *testing.T) {
		f := setup(t)
		state := visibleState(t, f)
		tr := mustTxn(t, f, cmdTxn("n", nil, ops(opPut("brief", "x", "1"), opPut("brief", "y", "2"), opDelRange("brief", "", "", "")), nil))
		if got := tr.Results[2].GetDeleteRange().GetDeleted(); got != 2 {
			t.Fatalf("deleted %d, want 2", got)
		}
		if _, err := f.Object("n", "brief"); !errors.Is(err, ErrObjectNotFound) {
			t.Fatalf("object created and emptied in one txn exists: %v", err)
		}
		// Only the visible state is compared: the txn writes a zero stats
		// record into the object's shard if it had none, which changes
		// Hash (deterministically) but nothing a query sees.
		if got := visibleState(t, f); got != state {
			t.Fatalf("creating and emptying an object left a trace:\n%s\nwant\n%s", got, state)
		}
		mustConsistent(t, f)
	})
}

func TestTxnGet(t *testing.T) {
	f := mustTxnFSM(t)
	tr := mustTxn(t, f, cmdTxn("n", nil, ops(opGet("o", "k"), opGet("o", "j"), opGet("o", "e"), opGet("o", "nope"), opGet("none", "k")), nil))
	want := []*raftcmdv1.StoredKey{
		{Key: "k", Value: []byte("v2"), Encoding: encBin, CreateRevision: 2, ModRevision: 3},
		{Key: "j", Value: []byte(`{"a":1}`), Encoding: encJS, CreateRevision: 2, ModRevision: 2},
		{Key: "e", Value: []byte{}, Encoding: encBin, CreateRevision: 2, ModRevision: 2},
		nil,
		nil,
	}
	for i, w := range want {
		got := tr.Results[i].GetGet()
		if got == nil {
			t.Fatalf("result %d = %v, want a get result", i, tr.Results[i])
		}
		if !proto.Equal(got.Kv, w) {
			t.Fatalf("get %d = %v, want %v", i, got.Kv, w)
		}
	}
	if tr.Results[2].GetGet().Kv.Value == nil {
		t.Fatalf("an empty value reads back as nil, want empty")
	}

	// The values returned are copies: overwriting the key afterwards, so
	// that the pages it was read from are freed and reused, leaves them as
	// they were. (The object is made large first: a small shard bucket is
	// inline and copied by bbolt anyway, so its values never alias pages.)
	big := strings.Repeat("b", 1000)
	for i := 0; i < 8; i++ {
		mustApply1(t, f, cmdPut("n", "o", fmt.Sprintf("big%d", i), big))
	}
	tr = mustTxn(t, f, cmdTxn("n", nil, ops(opGet("o", "big3"), opList("o", txnList{prefix: "big", limit: 10})), nil))
	kept := tr.Results[0].GetGet().GetKv().GetValue()
	listed := tr.Results[1].GetList().GetKvs()
	for i := 0; i < 50; i++ {
		var kv []string
		for j := 0; j < 8; j++ {
			kv = append(kv, fmt.Sprintf("big%d", j), strings.Repeat(fmt.Sprint(i%10), 1000+i))
		}
		mustApply1(t, f, cmdPut("n", "o", kv...))
	}
	if string(kept) != big {
		t.Fatalf("value read by a txn get changed after later writes")
	}
	for _, kv := range listed {
		if string(kv.Value) != big {
			t.Fatalf("value of %q read by a txn list changed after later writes", kv.Key)
		}
	}
}

func TestTxnList(t *testing.T) {
	f := mustNew(t)
	mustApply1(t, f, cmdPutNamespace("n", 0))
	keys := []string{"a", "a1", "a2", "ab", "b", "b1", "c"}
	var kv []string
	for _, k := range keys {
		kv = append(kv, k, "v"+k)
	}
	mustApply(t, f, cmdPut("n", "o", kv...), cmdPut("n", "p", "a0", "x"))
	tests := []struct {
		name string
		l    txnList
		want []string
		more bool
	}{
		{"all", txnList{limit: 1000}, keys, false},
		{"limit", txnList{limit: 3}, []string{"a", "a1", "a2"}, true},
		{"limit exactly all", txnList{limit: 7}, keys, false},
		{"prefix", txnList{prefix: "a", limit: 10}, []string{"a", "a1", "a2", "ab"}, false},
		{"prefix limit", txnList{prefix: "a", limit: 2}, []string{"a", "a1"}, true},
		{"prefix exact", txnList{prefix: "a", limit: 4}, []string{"a", "a1", "a2", "ab"}, false},
		{"start end", txnList{start: "a1", end: "b1", limit: 10}, []string{"a1", "a2", "ab", "b"}, false},
		{"start", txnList{start: "ab", limit: 10}, []string{"ab", "b", "b1", "c"}, false},
		{"end", txnList{end: "a2", limit: 10}, []string{"a", "a1"}, false},
		{"prefix start", txnList{prefix: "a", start: "a2", limit: 10}, []string{"a2", "ab"}, false},
		{"prefix end", txnList{prefix: "a", end: "a2", limit: 10}, []string{"a", "a1"}, false},
		{"no match", txnList{prefix: "z", limit: 10}, nil, false},
		{"reverse", txnList{reverse: true, limit: 10}, []string{"c", "b1", "b", "ab", "a2", "a1", "a"}, false},
		{"reverse limit", txnList{reverse: true, limit: 2}, []string{"c", "b1"}, true},
		{"reverse prefix", txnList{prefix: "a", reverse: true, limit: 3}, []string{"ab", "a2", "a1"}, true},
		{"reverse start end", txnList{start: "a1", end: "b1", reverse: true, limit: 10}, []string{"b", "ab", "a2", "a1"}, false},
		{"reverse prefix start", txnList{prefix: "a", start: "a2", reverse: true, limit: 10}, []string{"ab", "a2"}, false},
	}
	for _, tt := range tests {
		for _, keysOnly := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/keysOnly=%v", tt.name, keysOnly), func(t *testing.T) {
				l := tt.l
				l.keysOnly = keysOnly
				lr := mustTxn(t, f, cmdTxn("n", nil, ops(opList("o", l)), nil)).Results[0].GetList()
				if lr == nil {
					t.Fatalf("no list result")
				}
				var got []string
				for _, kv := range lr.Kvs {
					got = append(got, kv.Key)
					if kv.CreateRevision != 2 || kv.ModRevision != 2 || kv.Encoding != encBin {
						t.Fatalf("key %v: want binary, created and modified at 2", kv)
					}
					if keysOnly && kv.Value != nil {
						t.Fatalf("keys_only list returned value %q", kv.Value)
					}
					if !keysOnly && string(kv.Value) != "v"+kv.Key {
						t.Fatalf("key %q has value %q", kv.Key, kv.Value)
					}
				}
				if !equalStrings(got, tt.want) || lr.More != tt.more {
					t.Fatalf("list = %q more=%v, want %q more=%v", got, lr.More, tt.want, tt.more)
				}
			})
		}
	}
	if lr := mustTxn(t, f, cmdTxn("n", nil, ops(opList("none", txnList{limit: 5})), nil)).Results[0].GetList(); len(lr.Kvs) != 0 || lr.More {
		t.Fatalf("list of a missing object = %v", lr)
	}
}

// Ops run in order, each seeing the writes of the ops before it.
func TestTxnOpsSeeEarlierOps(t *testing.T) {
	f := mustTxnFSM(t)
	idx := f.AppliedIndex() + 1
	tr := mustTxn(t, f, cmdTxn("n", nil, ops(
		opGet("o", "k"),                 // 0: before the put
		opPut("o", "k", "v3"),           // 1
		opGet("o", "k"),                 // 2: sees v3
		opDel("o", "j"),                 // 3
		opList("o", txnList{limit: 10}), // 4: no j
		opPut("p", "x", "1"),            // 5: new object
		opList("p", txnList{limit: 10}), // 6: sees x
		opDelRange("o", "", "", ""),     // 7: empties o
		opGet("o", "k"),                 // 8: gone
		opList("o", txnList{limit: 10}), // 9: empty
		opDel("o", "k"),                 // 10: already gone
	), nil))
	r := tr.Results
	if got := r[0].GetGet().GetKv(); string(got.GetValue()) != "v2" || got.ModRevision != 3 {
		t.Fatalf("get before put = %v", got)
	}
	if got := r[2].GetGet().GetKv(); string(got.GetValue()) != "v3" || got.ModRevision != idx || got.CreateRevision != 2 {
		t.Fatalf("get after put = %v, want v3 modified at %d", got, idx)
	}
	if got := storedKeys(r[4].GetList().Kvs); !equalStrings(got, []string{"b={\"a\":1}@2/2", "e=@2/2", fmt.Sprintf("k=v3@2/%d", idx)}) {
		t.Fatalf("list after delete = %q", got)
	}
	if got := storedKeys(r[6].GetList().Kvs); !equalStrings(got, []string{fmt.Sprintf("x=1@%d/%d", idx, idx)}) {
		t.Fatalf("list of a new object = %q", got)
	}
	if got := r[7].GetDeleteRange().GetDeleted(); got != 3 {
		t.Fatalf("delete_range deleted %d, want 3", got)
	}
	if r[8].GetGet().GetKv() != nil || len(r[9].GetList().Kvs) != 0 || r[10].GetDelete().GetDeleted() != 0 {
		t.Fatalf("reads after delete_range: %v / %v / %v", r[8], r[9], r[10])
	}
	if _, err := f.Object("n", "o"); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("o still exists: %v", err)
	}
	mustConsistent(t, f)
}

// Compares see the state before the ops, and pick the branch.
func TestTxnBranches(t *testing.T) {
	f := mustTxnFSM(t)

	// A compare-and-swap on k's mod revision: the first one wins, the
	// second (with the same expected revision) takes the failure branch and
	// reads the current value instead.
	cas := cmdTxn("n",
		cmps(cmpRev(tgtMod, "o", "k", relEq, 3)),
		ops(opPut("o", "k", "mine"), opGet("o", "k")),
		ops(opGet("o", "k")),
	)
	idx := f.AppliedIndex() + 1
	tr := mustTxn(t, f, cas)
	if !tr.Succeeded || tr.Results[0].GetPut() == nil || string(tr.Results[1].GetGet().GetKv().GetValue()) != "mine" {
		t.Fatalf("first CAS = %v, want success that put and read back", tr)
	}
	tr = mustTxn(t, f, cas)
	if tr.Succeeded || len(tr.Results) != 1 {
		t.Fatalf("second CAS = %v, want the failure branch", tr)
	}
	if got := tr.Results[0].GetGet().GetKv(); string(got.GetValue()) != "mine" || got.ModRevision != idx {
		t.Fatalf("failure branch read %v, want mine at %d", got, idx)
	}

	// Create-if-absent: the first time the compares hold and the success
	// ops run; the second time the key exists, and only the failure op runs.
	create := cmdTxn("n",
		cmps(cmpExists("o", "lock", relNe), cmpObjRev("o", relEq, idx)),
		ops(opPut("o", "lock", "a"), opPut("o", "k", "x")),
		ops(opPut("log", "lost", "1")),
	)
	idx2 := f.AppliedIndex() + 1
	tr = mustTxn(t, f, create)
	if !tr.Succeeded || !tr.Results[0].GetPut().GetCreated() {
		t.Fatalf("create-if-absent = %v, want success", tr)
	}
	if _, err := f.Object("n", "log"); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("failure op ran on success: %v", err)
	}
	tr = mustTxn(t, f, create)
	if tr.Succeeded || !tr.Results[0].GetPut().GetCreated() {
		t.Fatalf("second create-if-absent = %v, want the failure branch to run", tr)
	}
	if got := mustGet(t, f, "n", "o", "lock"); string(got.Value) != "a" || got.ModRevision != idx2 {
		t.Fatalf("lock = %+v, want a from %d (success ops must not run on failure)", got, idx2)
	}
	if got := mustGet(t, f, "n", "o", "k"); string(got.Value) != "x" || got.ModRevision != idx2 {
		t.Fatalf("k = %+v, want x from %d", got, idx2)
	}

	// A txn whose success ops would make its compare false still succeeds:
	// the compare saw the state before.
	tr = mustTxn(t, f, cmdTxn("n",
		cmps(cmpExists("o", "gone", relNe), cmpExists("o", "lock", relEq)),
		ops(opPut("o", "gone", "1"), opDel("o", "lock")),
		nil))
	if !tr.Succeeded {
		t.Fatalf("txn = %v, want success", tr)
	}

	// Empty branches.
	hash := mustHash(t, f)
	if tr := mustTxn(t, f, cmdTxn("n", cmps(cmpExists("o", "nope", relEq)), ops(opPut("o", "x", "1")), nil)); tr.Succeeded || len(tr.Results) != 0 {
		t.Fatalf("txn with empty failure branch = %v", tr)
	}
	if tr := mustTxn(t, f, cmdTxn("n", nil, nil, ops(opPut("o", "x", "1")))); !tr.Succeeded || len(tr.Results) != 0 {
		t.Fatalf("txn with no compares and no success ops = %v", tr)
	}
	if !bytes.Equal(hash, mustHash(t, f)) {
		t.Fatalf("transactions without writes changed the state")
	}
	mustConsistent(t, f)
}

// Every write of a txn gets the entry's index as its mod revision; object
// revisions move only on objects the txn changed.
func TestTxnRevisions(t *testing.T) {
	f := mustNew(t)
	mustApply1(t, f, cmdPutNamespace("n", 0))
	mustApply(t, f,
		cmdPut("n", "w", "a", "1", "b", "2"), // 2
		cmdPut("n", "d", "a", "1", "b", "2"), // 3
		cmdPut("n", "r", "a", "1"),           // 4
		cmdPut("n", "z", "a", "1"),           // 5
	)
	before := map[string]ObjectInfo{}
	for _, o := range []string{"w", "d", "r", "z"} {
		before[o] = mustObject(t, f, "n", o)
	}
	idx := f.AppliedIndex() + 1
	tr := mustTxn(t, f, cmdTxn("n",
		cmps(cmpObjRev("r", relEq, 4), cmpRev(tgtMod, "z", "a", relEq, 5)),
		ops(
			opPut("w", "a", "x"), opPut("w", "c", "y"), // w: modify and create
			opDel("d", "a"),                                 // d: delete only
			opGet("r", "a"), opList("r", txnList{limit: 9}), // r: read only
			opPut("n1", "k", "v"),        // new object
			opDel("z", "missing"),        // z: deletes nothing
			opDelRange("z", "q", "", ""), // z: deletes nothing
		), nil))
	if !tr.Succeeded {
		t.Fatalf("txn failed: %v", tr)
	}
	wantObj := map[string]struct{ rev, create uint64 }{
		"w":  {idx, 2},
		"d":  {idx, 3},
		"r":  {4, 4},
		"z":  {5, 5},
		"n1": {idx, idx},
	}
	for o, w := range wantObj {
		info := mustObject(t, f, "n", o)
		if info.Revision != w.rev || info.CreateRevision != w.create {
			t.Errorf("object %q: revision %d created %d, want %d and %d", o, info.Revision, info.CreateRevision, w.rev, w.create)
		}
	}
	mustEqualKVs(t, mustListAll(t, f, "n", "w"), []KeyValue{
		{Key: "a", Value: []byte("x"), Encoding: encBin, CreateRevision: 2, ModRevision: idx},
		{Key: "b", Value: []byte("2"), Encoding: encBin, CreateRevision: 2, ModRevision: 2},
		{Key: "c", Value: []byte("y"), Encoding: encBin, CreateRevision: idx, ModRevision: idx},
	})
	mustEqualKVs(t, mustListAll(t, f, "n", "n1"), []KeyValue{
		{Key: "k", Value: []byte("v"), Encoding: encBin, CreateRevision: idx, ModRevision: idx},
	})
	if got := mustNamespace(t, f, "n").ObjectCount; got != 5 {
		t.Fatalf("object count %d, want 5", got)
	}
	mustConsistent(t, f)

	// A failed compare runs the failure branch; its writes get the index
	// too, and the success branch's objects stay untouched.
	idx = f.AppliedIndex() + 1
	tr = mustTxn(t, f, cmdTxn("n", cmps(cmpObjRev("r", relNe, 4)), ops(opPut("w", "a", "no")), ops(opPut("r", "a", "2"))))
	if tr.Succeeded {
		t.Fatalf("txn succeeded: %v", tr)
	}
	if got := mustObject(t, f, "n", "r"); got.Revision != idx {
		t.Fatalf("r revision %d, want %d", got.Revision, idx)
	}
	if got := mustObject(t, f, "n", "w"); got.Revision != idx-1 {
		t.Fatalf("w revision %d, want %d (untouched)", got.Revision, idx-1)
	}
}

// A txn over three objects is atomic: a quota failure on the third
// object's put undoes the puts on the first two, and the commands around it
// in the same batch still apply; whether the txn's writes are taken back
// in place or the write transaction is rolled back and applied again.
func TestTxnMultiObjectAtomic(t *testing.T) {
	for _, redo := range []bool{false, true} {
		t.Run(map[bool]string{false: "taken back", true: "rolled back"}[redo], func(t *testing.T) { testTxnMultiObjectAtomic(t, redo) })
	}
}

func testTxnMultiObjectAtomic(t *testing.T, redo bool) {
	setup := func(t *testing.T) *FSM {
		f := mustNew(t)
		f.redoRefused = redo
		mustApply1(t, f, cmdPutNamespace("q", 10))
		mustApply(t, f, cmdPut("q", "o1", "a", "1"), cmdPut("q", "o3", "a", "123456")) // o3: 7 of 10 bytes
		return f
	}
	txn := cmdTxn("q", cmps(cmpExists("o1", "a", relEq)), ops(
		opPut("o1", "b", "2"),       // fits
		opPut("o2", "c", "3"),       // creates o2, fits
		opGet("o1", "b"),            // sees the put
		opPut("o3", "b", "1234567"), // o3 would hold 7+8 = 15 bytes
	), nil)
	first := cmdPut("q", "before", "k", "1")
	last := cmdPut("q", "after", "k", "1")

	t.Run("alone", func(t *testing.T) {
		f := setup(t)
		err := mustReject(t, f, txn, ErrQuotaExceeded)
		if !strings.Contains(err.Error(), `"o3"`) {
			t.Fatalf("quota error %q does not name o3", err)
		}
		if _, err := f.Object("q", "o2"); !errors.Is(err, ErrObjectNotFound) {
			t.Fatalf("o2 exists after a failed txn: %v", err)
		}
		mustConsistent(t, f)
	})

	t.Run("in a batch", func(t *testing.T) {
		f := setup(t)
		applies := f.Applies()
		idx := f.AppliedIndex() + 1
		res := applyCmds(t, f, first, txn, last)
		if res[0].Err != nil || res[2].Err != nil {
			t.Fatalf("commands around the txn failed: %v, %v", res[0].Err, res[2].Err)
		}
		if res[0].Result.Revision != idx || res[2].Result.Revision != idx+2 {
			t.Fatalf("revisions %d and %d, want %d and %d", res[0].Result.Revision, res[2].Result.Revision, idx, idx+2)
		}
		if !errors.Is(res[1].Err, ErrQuotaExceeded) || res[1].Result != nil {
			t.Fatalf("txn = %+v, want ErrQuotaExceeded and no result", res[1])
		}
		if got := f.Applies() - applies; got != 3 {
			t.Fatalf("Applies grew by %d, want 3 (the rolled back first attempt is not counted)", got)
		}
		// The same batch with the txn replaced by an entry that does
		// nothing gives the same state.
		twin := setup(t)
		entries := entriesFor(t, twin, first, txn, last)
		entries[1].Data = nil
		mustApplyBatch(t, twin, entries)
		if !bytes.Equal(mustHash(t, f), mustHash(t, twin)) {
			t.Fatalf("failed txn left a trace:\n%s\nwant\n%s", dumpState(t, f), dumpState(t, twin))
		}
		if got := keysOf(mustListAll(t, f, "q", "o1")); !equalStrings(got, []string{"a"}) {
			t.Fatalf("o1 keys %q, want only a", got)
		}
		if _, err := f.Object("q", "o2"); !errors.Is(err, ErrObjectNotFound) {
			t.Fatalf("o2 exists after a failed txn: %v", err)
		}
		for _, o := range []string{"before", "after"} {
			mustObject(t, f, "q", o)
		}
		if got := mustNamespace(t, f, "q").ObjectCount; got != 4 {
			t.Fatalf("object count %d, want 4", got)
		}
		mustConsistent(t, f)
	})

	t.Run("two failing txns in a batch", func(t *testing.T) {
		f := setup(t)
		res := applyCmds(t, f, first, txn, cmdPut("q", "mid", "k", "1"), txn, last)
		for i, r := range res {
			failing := i == 1 || i == 3
			if failing != (r.Err != nil) {
				t.Fatalf("command %d: %+v", i, r)
			}
		}
		if got := mustNamespace(t, f, "q").ObjectCount; got != 5 {
			t.Fatalf("object count %d, want 5", got)
		}
		mustConsistent(t, f)
	})

	t.Run("shrinking makes room", func(t *testing.T) {
		f := setup(t)
		idx := f.AppliedIndex() + 1
		mustTxn(t, f, cmdTxn("q", nil, ops(opDel("o3", "a"), opPut("o1", "b", "2"), opPut("o2", "c", "3"), opPut("o3", "b", "1234567")), nil))
		for _, o := range []string{"o1", "o2", "o3"} {
			if got := mustObject(t, f, "q", o).Revision; got != idx {
				t.Fatalf("%s revision %d, want %d", o, got, idx)
			}
		}
		mustConsistent(t, f)
	})
}

// Transactions keep the namespace's object count and the shard statistics
// in step with the objects they create and empty.
func TestTxnObjectCountsAndShardStats(t *testing.T) {
	f := mustNew(t)
	mustApply(t, f, cmdPutNamespace("n", 0), cmdPutNamespace("m", 0))
	var names []string
	for i := 0; i < 20; i++ {
		names = append(names, fmt.Sprintf("obj-%02d", i))
	}
	// Create 20 objects in one txn.
	var create []*raftcmdv1.TxnOp
	for _, o := range names {
		create = append(create, opPut(o, "k", o), opPut(o, "k2", "vv"))
	}
	mustTxn(t, f, cmdTxn("n", nil, create, nil))
	mustTxn(t, f, cmdTxn("m", nil, ops(opPut("obj-00", "k", "other ns")), nil))
	if got := mustNamespace(t, f, "n").ObjectCount; got != 20 {
		t.Fatalf("object count %d, want 20", got)
	}
	mustConsistent(t, f)

	// Empty half of them in different ways, grow and shrink others.
	var mixed []*raftcmdv1.TxnOp
	for i, o := range names {
		switch i % 4 {
		case 0:
			mixed = append(mixed, opDelRange(o, "", "", ""))
		case 1:
			mixed = append(mixed, opDel(o, "k"), opDel(o, "k2"))
		case 2:
			mixed = append(mixed, opPut(o, "k3", strings.Repeat("x", 100)))
		case 3:
			mixed = append(mixed, opDel(o, "k2"))
		}
	}
	mustTxn(t, f, cmdTxn("n", nil, mixed, nil))
	if got := mustNamespace(t, f, "n").ObjectCount; got != 10 {
		t.Fatalf("object count %d, want 10", got)
	}
	if got := mustNamespace(t, f, "m").ObjectCount; got != 1 {
		t.Fatalf("other namespace's object count %d, want 1", got)
	}
	mustConsistent(t, f)

	var objects, total uint64
	for _, s := range mustShardStats(t, f) {
		objects += s.Objects
		total += s.Bytes
	}
	// 5 objects with k, k2, k3; 5 with k only; 1 in m.
	want := uint64(5*(1+6+2+2+2+100) + 5*(1+6) + (1 + 8))
	if objects != 11 || total != want {
		t.Fatalf("shard stats add up to %d objects, %d bytes; want 11 and %d", objects, total, want)
	}

	// Empty everything: the shard stats return to zero.
	var all []*raftcmdv1.TxnOp
	for _, o := range names {
		all = append(all, opDelRange(o, "", "", ""))
	}
	mustTxn(t, f, cmdTxn("n", nil, all, nil))
	mustTxn(t, f, cmdTxn("m", nil, ops(opDelRange("obj-00", "", "", "")), nil))
	for _, s := range mustShardStats(t, f) {
		if s.Objects != 0 || s.Bytes != 0 {
			t.Fatalf("shard %d: %d objects %d bytes after everything was deleted", s.Shard, s.Objects, s.Bytes)
		}
	}
	if got := mustNamespace(t, f, "n").ObjectCount; got != 0 {
		t.Fatalf("object count %d, want 0", got)
	}
	// The namespace can now be deleted without force.
	mustApply1(t, f, cmdDeleteNamespace("n", false))
	mustConsistent(t, f)
}
