package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/client"
)

// The key/value workload: clients doing random gets, puts, deletes and
// compare-and-set transactions on a few keys of one object. Every write
// carries a request id; a write whose answer is lost (timeout, node down)
// is retried with the same id until it gets an answer, as a careful
// application would, so that its outcome becomes known: the operation
// then spans from its first invocation to that answer. Only a write still
// unanswered when the run ends has an unknown outcome.

const (
	kvNamespace = "chaos"
	kvObject    = "kv"
	kvKeys      = 8
)

type opKind int

const (
	opGet opKind = iota
	opPut
	opDelete
	opCAS // put value if the key holds expect (or is absent, when expectAbsent)
)

func (k opKind) String() string { return [...]string{"get", "put", "delete", "cas"}[k] }

// kvInput is an operation as invoked.
type kvInput struct {
	op           opKind
	key          string
	value        string // put and cas: unique per operation
	expect       string // cas
	expectAbsent bool   // cas
}

// kvOutput is an operation's answer. rev is the write's revision, or the
// key's mod_revision for a get (and for a failed cas, which reads the key).
type kvOutput struct {
	unknown   bool
	found     bool   // get, failed cas: the key exists
	value     string // get, failed cas
	rev       uint64
	deleted   bool // delete
	succeeded bool // cas
}

// kvOp is one entry of the history.
type kvOp struct {
	client      int
	in          kvInput
	out         kvOutput
	call, ret   int64 // nanoseconds since the run started
	attempts    int
	requestID   string
	unknownSpan bool // the answer never came; ret is the end of the run
}

// history collects the operations of every client.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []kvOp
}

func (h *history) now() int64 { return time.Since(h.start).Nanoseconds() }

func (h *history) add(op kvOp) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

// snapshot returns the operations recorded so far.
func (h *history) snapshot() []kvOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]kvOp(nil), h.ops...)
}

func keyName(i int) string { return fmt.Sprintf("k%d", i) }

// kvClient is one workload client.
type kvClient struct {
	id   int
	rng  *rand.Rand
	h    *history
	live *liveClient
	seq  int
	// lastSeen is the value the client last read or wrote per key, the
	// expectation of its next cas on that key.
	lastSeen map[string]*string
}

// newKVClient returns client id of the workload, its randomness derived
// from the run's seed.
func newKVClient(id int, seed int64, c *cluster, h *history) *kvClient {
	return &kvClient{id: id, rng: rand.New(rand.NewSource(seed*1000 + int64(id))), h: h,
		live: &liveClient{c: c, rotate: id, retryFor: 5 * time.Second}, lastSeen: map[string]*string{}}
}

// run issues operations until ctx ends; a write whose outcome is unknown
// is retried until it is answered or stop ends.
func (k *kvClient) run(ctx, stop context.Context) {
	defer k.live.close()
	for ctx.Err() == nil {
		k.one(stop, k.next())
	}
}

// next draws the next operation.
func (k *kvClient) next() kvInput {
	key := keyName(k.rng.Intn(kvKeys))
	k.seq++
	value := fmt.Sprintf("c%d-%d", k.id, k.seq)
	switch r := k.rng.Intn(100); {
	case r < 40:
		return kvInput{op: opGet, key: key}
	case r < 65:
		return kvInput{op: opPut, key: key, value: value}
	case r < 75:
		return kvInput{op: opDelete, key: key}
	default:
		in := kvInput{op: opCAS, key: key, value: value}
		if last := k.lastSeen[key]; last != nil && k.rng.Intn(4) > 0 {
			in.expect = *last
		} else if last == nil && k.rng.Intn(2) == 0 {
			in.expectAbsent = true
		} else {
			in.expect = fmt.Sprintf("c%d-%d", k.rng.Intn(8), k.rng.Intn(k.seq+1)) // mostly a miss
		}
		return in
	}
}

// one runs in, retrying a write with the same request id until it is
// answered or stop ends, and records it. A read that fails is left out of
// the history: it changed nothing.
func (k *kvClient) one(stop context.Context, in kvInput) {
	op := kvOp{client: k.id, in: in, call: k.h.now(), requestID: fmt.Sprintf("chaos-c%d-%d-%d", k.id, k.seq, k.rng.Int63())}
	for {
		op.attempts++
		out, err := k.do(k.live.get(), in, op.requestID)
		if err == nil {
			op.out, op.ret = out, k.h.now()
			break
		}
		if in.op == opGet {
			return
		}
		if stop.Err() != nil {
			op.out, op.unknownSpan = kvOutput{unknown: true}, true
			break
		}
		if definite(err) {
			// Refused before anything was applied: a write that did not
			// happen is no operation at all.
			return
		}
		time.Sleep(20 * time.Millisecond) // the client already backed off; just do not spin
	}
	k.observe(in, op.out)
	k.h.add(op)
}

// definite reports whether a write's error means it was not applied.
func definite(err error) bool { return errors.Is(err, client.ErrInvalidArgument) }

// observe remembers what the client learnt of a key's value.
func (k *kvClient) observe(in kvInput, out kvOutput) {
	set := func(v string) { k.lastSeen[in.key] = &v }
	switch {
	case out.unknown:
		delete(k.lastSeen, in.key)
	case in.op == opGet || (in.op == opCAS && !out.succeeded):
		if out.found {
			set(out.value)
		} else {
			delete(k.lastSeen, in.key)
		}
	case in.op == opPut || in.op == opCAS:
		set(in.value)
	case in.op == opDelete:
		delete(k.lastSeen, in.key)
	}
}

// do sends one attempt of in.
func (k *kvClient) do(cl *client.Client, in kvInput, requestID string) (kvOutput, error) {
	// Shorter than a pause (5 to 8 s), so that a client on a paused node
	// gives up on it and retries; the client then tries another node.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	switch in.op {
	case opGet:
		kv, err := cl.Get(ctx, kvNamespace, kvObject, in.key)
		if errors.Is(err, client.ErrNotFound) {
			return kvOutput{}, nil
		}
		if err != nil {
			return kvOutput{}, err
		}
		return kvOutput{found: true, value: string(kv.Value), rev: kv.ModRevision}, nil
	case opPut:
		res, err := cl.Put(ctx, kvNamespace, kvObject, in.key, []byte(in.value), client.WithRequestID(requestID))
		return kvOutput{rev: res.Revision}, err
	case opDelete:
		deleted, rev, err := cl.Delete(ctx, kvNamespace, kvObject, in.key, client.WithRequestID(requestID))
		return kvOutput{deleted: deleted, rev: rev}, err
	}
	cmp := &cairnv1.Compare{Object: kvObject, Key: in.key, Relation: cairnv1.Relation_RELATION_EQUAL}
	if in.expectAbsent {
		cmp.Target = &cairnv1.Compare_Exists{Exists: false}
	} else {
		cmp.Target = &cairnv1.Compare_BinaryValue{BinaryValue: []byte(in.expect)}
	}
	resp, err := cl.Txn(ctx, &cairnv1.TxnRequest{
		Namespace: kvNamespace, RequestId: requestID, Compares: []*cairnv1.Compare{cmp},
		Success: []*cairnv1.TxnOp{{Op: &cairnv1.TxnOp_Put{Put: &cairnv1.PutOp{Object: kvObject, Key: in.key,
			Content: &cairnv1.PutOp_BinaryValue{BinaryValue: []byte(in.value)}}}}},
		Failure: []*cairnv1.TxnOp{{Op: &cairnv1.TxnOp_Get{Get: &cairnv1.GetOp{Object: kvObject, Key: in.key}}}},
	})
	if err != nil {
		return kvOutput{}, err
	}
	out := kvOutput{succeeded: resp.Succeeded, rev: resp.Revision}
	if !resp.Succeeded {
		if len(resp.Results) != 1 || resp.Results[0].GetGet() == nil {
			return kvOutput{}, fmt.Errorf("cas: failure branch answered %v, want one get", resp.Results)
		}
		if kv := resp.Results[0].GetGet().GetKv(); kv != nil {
			out.found, out.value, out.rev = true, string(kv.GetBinaryValue()), kv.ModRevision
		}
	}
	return out, nil
}
