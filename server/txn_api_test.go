package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc/codes"
)

// TestTxnAPI: transactions and conditional writes over gRPC and REST:
// branches, results, limits with precise errors, and HTTP 412.
func TestTxnAPI(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	f, _ := some(t, c)
	mustPutNamespace(t, f, "tx")
	put := func(object, key string, v any) *cairnv1.TxnOp {
		return &cairnv1.TxnOp{Op: &cairnv1.TxnOp_Put{Put: &cairnv1.PutOp{Object: object, Key: key, Content: &cairnv1.PutOp_Value{Value: jsonValue(t, v)}}}}
	}
	get := func(object, key string) *cairnv1.TxnOp {
		return &cairnv1.TxnOp{Op: &cairnv1.TxnOp_Get{Get: &cairnv1.GetOp{Object: object, Key: key}}}
	}

	// A two-object transfer, then the same compares fail and the failure
	// branch reports the current state.
	mustPutKey(t, f, "tx", "a", "bal", 100.0)
	transfer := &cairnv1.TxnRequest{
		Namespace: "tx",
		Compares: []*cairnv1.Compare{
			{Object: "a", Key: "bal", Target: &cairnv1.Compare_Value{Value: jsonValue(t, 100.0)}},
			{Object: "b", Key: "bal", Target: &cairnv1.Compare_Exists{Exists: false}},
		},
		Success: []*cairnv1.TxnOp{put("a", "bal", 60.0), put("b", "bal", 40.0), get("b", "bal")},
		Failure: []*cairnv1.TxnOp{get("a", "bal"), get("b", "bal")},
	}
	resp, err := f.objects().Txn(testCtx(t), transfer)
	if err != nil || !resp.Succeeded || len(resp.Results) != 3 {
		t.Fatalf("transfer: %v %+v", err, resp)
	}
	if !resp.Results[1].GetPut().Created || resp.Results[2].GetGet().GetKv().GetValue().GetNumberValue() != 40 ||
		resp.Results[2].GetGet().GetKv().ModRevision != resp.Revision {
		t.Fatalf("transfer results: %+v", resp.Results)
	}
	again, err := f.objects().Txn(testCtx(t), transfer)
	if err != nil || again.Succeeded || len(again.Results) != 2 || again.Results[0].GetGet().GetKv().GetValue().GetNumberValue() != 60 {
		t.Fatalf("repeated transfer: %v %+v", err, again)
	}
	// Object revision compares.
	obj, err := f.objects().GetObject(testCtx(t), &cairnv1.GetObjectRequest{Namespace: "tx", Object: "a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rel  cairnv1.Relation
		rev  uint64
		want bool
	}{
		{cairnv1.Relation_RELATION_EQUAL, obj.Object.Revision, true},
		{cairnv1.Relation_RELATION_LESS, obj.Object.Revision, false},
		{cairnv1.Relation_RELATION_LESS, obj.Object.Revision + 1, true},
		{cairnv1.Relation_RELATION_GREATER, obj.Object.Revision - 1, true},
		{cairnv1.Relation_RELATION_NOT_EQUAL, obj.Object.Revision, false},
	} {
		r, err := f.objects().Txn(testCtx(t), &cairnv1.TxnRequest{Namespace: "tx", Compares: []*cairnv1.Compare{
			{Object: "a", Relation: tc.rel, Target: &cairnv1.Compare_ObjectRevision{ObjectRevision: tc.rev}},
		}})
		if err != nil || r.Succeeded != tc.want {
			t.Fatalf("object revision %v %d (object at %d): %v, succeeded %v", tc.rel, tc.rev, obj.Object.Revision, err, r.GetSucceeded())
		}
	}

	// Limits and bad requests: precise errors, nothing applied.
	before := c.mustStateHash(t)
	many := func(n int, op *cairnv1.TxnOp) []*cairnv1.TxnOp {
		out := make([]*cairnv1.TxnOp, n)
		for i := range out {
			out[i] = op
		}
		return out
	}
	cmp := &cairnv1.Compare{Object: "a", Key: "bal", Target: &cairnv1.Compare_ModRevision{ModRevision: 1}}
	for _, tc := range []struct {
		name  string
		req   *cairnv1.TxnRequest
		code  codes.Code
		parts []string
	}{
		{"too many compares", &cairnv1.TxnRequest{Namespace: "tx", Compares: func() []*cairnv1.Compare {
			out := make([]*cairnv1.Compare, 129)
			for i := range out {
				out[i] = cmp
			}
			return out
		}()}, codes.InvalidArgument, []string{"compares", "129", "128"}},
		{"too many success ops", &cairnv1.TxnRequest{Namespace: "tx", Success: many(129, put("a", "x", 1.0))}, codes.InvalidArgument, []string{"success", "128"}},
		{"too many failure ops", &cairnv1.TxnRequest{Namespace: "tx", Failure: many(129, get("a", "x"))}, codes.InvalidArgument, []string{"failure", "128"}},
		{"ordered value compare", &cairnv1.TxnRequest{Namespace: "tx", Compares: []*cairnv1.Compare{
			{Object: "a", Key: "bal", Relation: cairnv1.Relation_RELATION_LESS, Target: &cairnv1.Compare_Value{Value: jsonValue(t, 1.0)}},
		}}, codes.InvalidArgument, []string{"compares[0]", "EQUAL"}},
		{"compare without target", &cairnv1.TxnRequest{Namespace: "tx", Compares: []*cairnv1.Compare{{Object: "a", Key: "bal"}}},
			codes.InvalidArgument, []string{"compares[0]", "mod_revision"}},
		{"long key in op", &cairnv1.TxnRequest{Namespace: "tx", Success: []*cairnv1.TxnOp{put("a", strings.Repeat("k", 2049), 1.0)}},
			codes.InvalidArgument, []string{"success[0].put.key", "2049", "2048"}},
		{"empty op", &cairnv1.TxnRequest{Namespace: "tx", Failure: []*cairnv1.TxnOp{{}}}, codes.InvalidArgument, []string{"failure[0]"}},
		{"list limit", &cairnv1.TxnRequest{Namespace: "tx", Success: []*cairnv1.TxnOp{{Op: &cairnv1.TxnOp_List{List: &cairnv1.ListOp{Object: "a", Limit: 1001}}}}},
			codes.InvalidArgument, []string{"success[0].list", "1000"}},
		{"unknown namespace", &cairnv1.TxnRequest{Namespace: "nope", Success: []*cairnv1.TxnOp{put("a", "x", 1.0)}}, codes.NotFound, []string{"nope"}},
		{"long request id", &cairnv1.TxnRequest{Namespace: "tx", RequestId: strings.Repeat("r", 129), Success: []*cairnv1.TxnOp{put("a", "x", 1.0)}},
			codes.InvalidArgument, []string{"request_id", "128"}},
	} {
		_, err := f.objects().Txn(testCtx(t), tc.req)
		t.Run(tc.name, func(t *testing.T) { wantCode(t, err, tc.code, tc.parts...) })
	}
	if after := c.mustStateHash(t); string(after) != string(before) {
		t.Fatalf("refused transactions changed the state")
	}

	// Conditional writes over REST: 412 with the reason, then success.
	l := c.leader(t)
	cur := mustGetKey(t, l, "tx", "a", "bal", "")
	code, body := restCall(t, f, http.MethodPut, "/v1/namespaces/tx/objects/a/keys/bal",
		fmt.Sprintf(`{"value": 1, "expected_mod_revision": "%d"}`, cur.ModRevision-1))
	if code != http.StatusPreconditionFailed || !strings.Contains(string(body), "REVISION_MISMATCH") || !strings.Contains(string(body), fmt.Sprint(cur.ModRevision)) {
		t.Fatalf("stale conditional put: HTTP %d %s", code, body)
	}
	ok := restJSON(t, f, http.MethodPut, "/v1/namespaces/tx/objects/a/keys/bal", fmt.Sprintf(`{"value": 1, "expected_mod_revision": "%d"}`, cur.ModRevision), http.StatusOK)
	newRev := revision(t, ok, "revision")
	code, body = restCall(t, l, http.MethodDelete, fmt.Sprintf("/v1/namespaces/tx/objects/a/keys/bal?expected_mod_revision=%d", cur.ModRevision), "")
	if code != http.StatusPreconditionFailed {
		t.Fatalf("stale conditional delete: HTTP %d %s", code, body)
	}
	del := restJSON(t, l, http.MethodDelete, fmt.Sprintf("/v1/namespaces/tx/objects/a/keys/bal?expected_mod_revision=%d", newRev), "", http.StatusOK)
	if del["deleted"] != true {
		t.Fatalf("conditional delete: %v", del)
	}
	// expected_mod_revision 0: create only.
	restJSON(t, f, http.MethodPut, "/v1/namespaces/tx/objects/a/keys/bal", `{"value": 2, "expected_mod_revision": "0"}`, http.StatusOK)
	if code, body := restCall(t, f, http.MethodPut, "/v1/namespaces/tx/objects/a/keys/bal", `{"value": 3, "expected_mod_revision": "0"}`); code != http.StatusPreconditionFailed {
		t.Fatalf("create-only put of an existing key: HTTP %d %s", code, body)
	}
	// A transaction over REST.
	txn := restJSON(t, l, http.MethodPost, "/v1/namespaces/tx:txn",
		`{"compares": [{"object": "a", "key": "bal", "value": 2}], "success": [{"delete_range": {"object": "b"}}], "request_id": "rest-1"}`, http.StatusOK)
	if txn["succeeded"] != true {
		t.Fatalf("REST txn: %v", txn)
	}
	replay := restJSON(t, f, http.MethodPost, "/v1/namespaces/tx:txn",
		`{"compares": [{"object": "a", "key": "bal", "value": 2}], "success": [{"delete_range": {"object": "b"}}], "request_id": "rest-1"}`, http.StatusOK)
	if h, _ := replay["header"].(map[string]any); h["replayed"] != true || replay["revision"] != txn["revision"] {
		t.Fatalf("REST replay: %v (first %v)", replay, txn)
	}
	if code, body := restCall(t, f, http.MethodPost, "/v1/namespaces/tx:txn", `{"success": [{"delete_range": {"object": "c"}}], "request_id": "rest-1"}`); code != http.StatusConflict {
		t.Fatalf("reused request id: HTTP %d %s", code, body)
	}
}
