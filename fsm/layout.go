package fsm

import (
	"encoding/binary"
	"fmt"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
)

// On-disk layout (see DESIGN.md). Every bucket is top level; there are no
// nested buckets, so a snapshot is a flat sorted stream of (bucket, key,
// value) records.
var (
	bucketMeta       = []byte("meta")       // metaApplied, metaNow, metaFormat
	bucketNamespaces = []byte("namespaces") // name -> raftcmdv1.Namespace
	bucketMembers    = []byte("members")    // id -> raftcmdv1.Member
	bucketObjects    = []byte("objects")    // lp(ns) + name -> shard (1 byte)
	// bucketRequests and bucketRequestExpiry: see requests.go.

	metaApplied = []byte("applied") // uint64 BE: last applied log index
	metaNow     = []byte("now")     // int64 BE: log time, unix ms
	metaFormat  = []byte("format")  // uint32 BE: storage format version

	// Inside a shard bucket.
	prefixObject = byte('o') // 'o' + lp(ns) + lp(name) -> object record
	prefixKey    = byte('k') // 'k' + lp(ns) + lp(name) + key -> key record
	shardStatKey = []byte("s")
)

// storageFormat is the version of the layout above.
const storageFormat = 1

// shardBuckets holds the names of the 256 shard buckets, "shard/000"..
// "shard/255", so that a shard's data is contiguous on disk.
var shardBuckets = func() [NumShards][]byte {
	var b [NumShards][]byte
	for i := range b {
		b[i] = []byte(fmt.Sprintf("shard/%03d", i))
	}
	return b
}()

// appendLP appends s with a two-byte big-endian length prefix. Names are
// at most MaxObjectNameBytes long, so two bytes always suffice.
func appendLP(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// objectKey is the key of object (ns, name)'s record in its shard bucket.
func objectKey(ns, name string) []byte {
	b := make([]byte, 0, 5+len(ns)+len(name))
	b = append(b, prefixObject)
	return appendLP(appendLP(b, ns), name)
}

// keyPrefix is the prefix of all of object (ns, name)'s keys in its shard
// bucket.
func keyPrefix(ns, name string) []byte {
	b := make([]byte, 0, 5+len(ns)+len(name)+32)
	b = append(b, prefixKey)
	return appendLP(appendLP(b, ns), name)
}

// indexKey is object (ns, name)'s key in bucketObjects; the index keeps a
// namespace's objects together and in name order.
func indexKey(ns, name string) []byte {
	return append(appendLP(make([]byte, 0, 2+len(ns)+len(name)), ns), name...)
}

// objectRecord is the stored summary of one object.
type objectRecord struct {
	revision       uint64 // index of the latest write to the object
	createRevision uint64
	keys           uint64
	bytes          uint64 // sum of key and value lengths
}

const recordVersion = 1

func (o objectRecord) encode() []byte {
	b := make([]byte, 0, 1+4*binary.MaxVarintLen64)
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, o.revision)
	b = binary.AppendUvarint(b, o.createRevision)
	b = binary.AppendUvarint(b, o.keys)
	return binary.AppendUvarint(b, o.bytes)
}

func decodeObjectRecord(b []byte) (objectRecord, error) {
	var o objectRecord
	if len(b) < 1 || b[0] != recordVersion {
		return o, fmt.Errorf("fsm: object record: unknown version")
	}
	r := uvarintReader{b: b[1:]}
	o.revision = r.next()
	o.createRevision = r.next()
	o.keys = r.next()
	o.bytes = r.next()
	return o, r.err
}

// keyRecord is the stored form of one key's value.
type keyRecord struct {
	encoding       raftcmdv1.ValueEncoding
	createRevision uint64
	modRevision    uint64
	value          []byte
}

func (k keyRecord) encode() []byte {
	b := make([]byte, 0, 2+2*binary.MaxVarintLen64+len(k.value))
	b = append(b, recordVersion, byte(k.encoding))
	b = binary.AppendUvarint(b, k.createRevision)
	b = binary.AppendUvarint(b, k.modRevision)
	return append(b, k.value...)
}

// decodeKeyRecord decodes b. The returned value aliases b: copy it before
// the transaction that produced b ends.
func decodeKeyRecord(b []byte) (keyRecord, error) {
	var k keyRecord
	if len(b) < 2 || b[0] != recordVersion {
		return k, fmt.Errorf("fsm: key record: unknown version")
	}
	k.encoding = raftcmdv1.ValueEncoding(b[1])
	r := uvarintReader{b: b[2:]}
	k.createRevision = r.next()
	k.modRevision = r.next()
	k.value = r.b
	return k, r.err
}

// shardStat is a shard's object count, key count and bytes.
type shardStat struct {
	objects uint64
	bytes   uint64
	keys    uint64
}

func (s shardStat) encode() []byte {
	b := binary.AppendUvarint(nil, s.objects)
	b = binary.AppendUvarint(b, s.bytes)
	return binary.AppendUvarint(b, s.keys)
}

func decodeShardStat(b []byte) (shardStat, error) {
	if b == nil {
		return shardStat{}, nil
	}
	r := uvarintReader{b: b}
	s := shardStat{objects: r.next(), bytes: r.next(), keys: r.next()}
	return s, r.err
}

type uvarintReader struct {
	b   []byte
	err error
}

func (r *uvarintReader) next() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("fsm: truncated record")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func readU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
