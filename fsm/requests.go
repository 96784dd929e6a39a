package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// Exactly-once writes: the FSM remembers, per (namespace, request id), a
// digest of the command and its result until the command's retention
// window, in log time, has passed. Expired entries are removed a bounded
// number per batch, oldest first, so memory and disk stay bounded by the
// request rate times the window.
var (
	bucketRequests      = []byte("requests")       // lp(ns) + request id -> request record
	bucketRequestExpiry = []byte("request_expiry") // expiry ms (uint64 BE) + lp(ns) + request id -> empty
)

const (
	// DefaultRequestRetentionMs is the window of a command that names none.
	DefaultRequestRetentionMs = 10 * 60 * 1000
	// MaxRequestIDBytes is the longest request id.
	MaxRequestIDBytes = 128
	// expiryBatch bounds how many expired request records one batch
	// removes, so that expiry never stalls the log.
	expiryBatch = 256
)

// commandNamespace returns the namespace a command's request id is scoped
// to ("" for cluster commands).
func commandNamespace(cmd *raftcmdv1.Command) string {
	switch op := cmd.Op.(type) {
	case *raftcmdv1.Command_PutNamespace:
		return op.PutNamespace.GetName()
	case *raftcmdv1.Command_DeleteNamespace:
		return op.DeleteNamespace.GetName()
	case *raftcmdv1.Command_BatchWrite:
		return op.BatchWrite.GetNamespace()
	case *raftcmdv1.Command_DeleteObject:
		return op.DeleteObject.GetNamespace()
	case *raftcmdv1.Command_Txn:
		return op.Txn.GetNamespace()
	case *raftcmdv1.Command_SetAlarm:
		return op.SetAlarm.GetNamespace()
	case *raftcmdv1.Command_DeleteAlarm:
		return op.DeleteAlarm.GetNamespace()
	case *raftcmdv1.Command_ClaimAlarms:
		return op.ClaimAlarms.GetNamespace()
	case *raftcmdv1.Command_BeginDelivery:
		return op.BeginDelivery.GetNamespace()
	case *raftcmdv1.Command_AckAlarms:
		return op.AckAlarms.GetNamespace()
	}
	return ""
}

// requestDigest identifies what a command asks, apart from when and by
// which attempt it was sent.
//
// It clears those fields of cmd while it encodes it, and puts them back:
// a copy of the command, values included, cost more than the rest of a
// put's bookkeeping.
func requestDigest(cmd *raftcmdv1.Command) [sha256.Size]byte {
	v, t, id, r := cmd.Version, cmd.TimeUnixMs, cmd.RequestId, cmd.RequestRetentionMs
	cmd.Version, cmd.TimeUnixMs, cmd.RequestId, cmd.RequestRetentionMs = 0, 0, "", 0
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
	cmd.Version, cmd.TimeUnixMs, cmd.RequestId, cmd.RequestRetentionMs = v, t, id, r
	must(err)
	return sha256.Sum256(b)
}

// maxRequestRetentionMs caps a command's window (30 days), so that expiry
// arithmetic cannot overflow.
const maxRequestRetentionMs = 30 * 24 * 3600 * 1000

func retentionOf(cmd *raftcmdv1.Command) int64 {
	switch r := cmd.RequestRetentionMs; {
	case r <= 0:
		return DefaultRequestRetentionMs
	case r > maxRequestRetentionMs:
		return maxRequestRetentionMs
	default:
		return r
	}
}

func requestKey(ns, id string) []byte {
	return append(appendLP(make([]byte, 0, 2+len(ns)+len(id)), ns), id...)
}

// requestRecord is the stored memory of one applied request.
type requestRecord struct {
	expiry uint64 // log time, unix ms
	digest [sha256.Size]byte
	result []byte // deterministic raftcmdv1.Result
}

func (r requestRecord) encode() []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(r.digest)+len(r.result))
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, r.expiry)
	b = append(b, r.digest[:]...)
	return append(b, r.result...)
}

func decodeRequestRecord(b []byte) (requestRecord, error) {
	var r requestRecord
	if len(b) < 1 || b[0] != recordVersion {
		return r, fmt.Errorf("fsm: request record: unknown version")
	}
	ur := uvarintReader{b: b[1:]}
	r.expiry = ur.next()
	if ur.err != nil || len(ur.b) < len(r.digest) {
		return r, fmt.Errorf("fsm: truncated request record")
	}
	copy(r.digest[:], ur.b)
	r.result = ur.b[len(r.digest):]
	return r, nil
}

// lookupRequest finds a live record of request id in namespace ns, stored
// under key. found is false when there is none (or it has expired). A
// record with another digest means the id was reused for a different
// request. expired is the expiry of a record whose window has ended and
// that is not yet removed, 0 when there is none (an expiry is after a log
// time, so never 0).
func lookupRequest(tx *bolt.Tx, key []byte, ns, id string, digest [sha256.Size]byte, now int64) (res *raftcmdv1.Result, expired uint64, found bool, err error) {
	v := tx.Bucket(bucketRequests).Get(key)
	if v == nil {
		return nil, 0, false, nil
	}
	rec, derr := decodeRequestRecord(v)
	if derr != nil {
		panic(derr)
	}
	if int64(rec.expiry) <= now {
		return nil, rec.expiry, false, nil
	}
	if !bytes.Equal(rec.digest[:], digest[:]) {
		return nil, 0, true, fmt.Errorf("%w: request_id %q was already used for a different request in namespace %q; use a new id for a new request",
			ErrRequestIDReused, id, ns)
	}
	res = &raftcmdv1.Result{}
	if uerr := proto.Unmarshal(rec.result, res); uerr != nil {
		panic(fmt.Sprintf("fsm: stored result of request %q: %v", id, uerr))
	}
	res.Replayed = true
	return res, 0, true, nil
}

// rememberRequest stores res as the answer to the request under key until
// now + retention, in place of the expired record that lookupRequest found
// (expired, 0 when none).
func (a *applier) rememberRequest(key []byte, expired uint64, digest [sha256.Size]byte, retention int64, res *raftcmdv1.Result) {
	reqs := a.tx.Bucket(bucketRequests)
	exp := a.tx.Bucket(bucketRequestExpiry)
	if expired != 0 {
		a.delete(exp, append(u64(expired), key...))
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
	must(err)
	expiry := uint64(a.now + retention)
	a.put(reqs, key, requestRecord{expiry: expiry, digest: digest, result: b}.encode())
	a.put(exp, append(u64(expiry), key...), []byte{})
}

// expiryHint remembers, within one write transaction, the last expiry
// entry removed. Removals leave empty leaves at the start of the index
// until the transaction commits (bbolt rebalances then), and a seek to the
// index's first key walks over every one of them: in the steady state of a
// busy cluster, where each write removes a record whose window ended, that
// walk had become a tenth of a follower's CPU. Every key before the one
// removed last is gone too (removals go in key order), and no key inserted
// since sorts before it (a new record's expiry is after the log time, and
// the removed one's at or before it), so seeking there finds the first key.
type expiryHint struct {
	tx   *bolt.Tx // the transaction from is valid in
	from []byte   // the key removed last, nil when none was in tx
}

// expireRequests removes up to max request records whose window ended at
// or before now, oldest first.
func expireRequests(tx *bolt.Tx, hint *expiryHint, now int64, max int) {
	exp := tx.Bucket(bucketRequestExpiry)
	reqs := tx.Bucket(bucketRequests)
	if hint.tx != tx {
		*hint = expiryHint{tx: tx}
	}
	c := exp.Cursor()
	for i := 0; i < max; i++ {
		var k []byte
		if hint.from == nil {
			k, _ = c.First()
		} else {
			k, _ = c.Seek(hint.from)
		}
		if k == nil || int64(binary.BigEndian.Uint64(k[:8])) > now {
			return
		}
		hint.from = append(hint.from[:0], k...)
		must(reqs.Delete(k[8:]))
		must(c.Delete())
	}
}

// RequestRecords returns how many request records are stored (for tests
// and metrics).
func (f *FSM) RequestRecords() (int, error) {
	n := 0
	err := f.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketRequests).Stats().KeyN
		return nil
	})
	return n, err
}
