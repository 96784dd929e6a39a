package fsm

import (
	"errors"
	"fmt"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"google.golang.org/protobuf/proto"
)

// benchPut is the command of one client put: a 256-byte value under one of
// 10,000 keys, with a request id (as the Go client sends every write):
// random, or, when ordered, time-ordered as the Go client makes them. Each
// command is 1 ms of log time after the one before; with a retention, its
// request record expires that long after it.
func benchPut(i int, ordered bool, retentionMs int64) *raftcmdv1.Command {
	id := fmt.Sprintf("%016x%016x", mix(uint64(i)), mix(^uint64(i)))
	if ordered {
		id = fmt.Sprintf("%012x%020x", baseTimeMs+int64(i), mix(uint64(i)))
	}
	return &raftcmdv1.Command{
		Version:            CommandVersion,
		TimeUnixMs:         baseTimeMs + int64(i),
		RequestId:          id,
		RequestRetentionMs: retentionMs,
		Op: &raftcmdv1.Command_BatchWrite{BatchWrite: &raftcmdv1.BatchWrite{
			Namespace: "bench", Object: fmt.Sprintf("o%d", i%100),
			Puts: []*raftcmdv1.KeyPut{{Key: fmt.Sprintf("k%05d", i%10000), Value: make([]byte, 256), Encoding: raftcmdv1.ValueEncoding_VALUE_ENCODING_BINARY}},
		}},
	}
}

// mix scrambles i (splitmix64's finalizer): ids that look random, the
// same in every run.
func mix(i uint64) uint64 {
	i += 0x9e3779b97f4a7c15
	i = (i ^ i>>30) * 0xbf58476d1ce4e5b9
	i = (i ^ i>>27) * 0x94d049bb133111eb
	return i ^ i>>31
}

// BenchmarkApplyBatch measures the FSM's apply path: decoding, request-id
// bookkeeping, the bbolt writes and the commit, per command, for the batch
// sizes Raft hands over (1 when idle, up to 64 under load), with the
// request ids the Go client makes (time-ordered) and with random ones,
// which touch a leaf of the request index at a random place each, and in
// the steady state of a long-running cluster, where every write's request
// record replaces one whose window has ended (expiring: a window of 10,000
// writes, where a cluster's is 10 minutes). Every command is a new request:
// none is answered from a request record. Run with
//
//	go test -run '^$' -bench ApplyBatch ./fsm
func BenchmarkApplyBatch(b *testing.B) {
	for _, c := range []struct {
		size      int
		ordered   bool
		retention int64
	}{{1, true, 0}, {16, true, 0}, {64, true, 0}, {64, false, 0}, {64, true, 10_000}} {
		name := fmt.Sprintf("batch=%d/ids=random", c.size)
		if c.ordered {
			name = fmt.Sprintf("batch=%d/ids=time-ordered", c.size)
		}
		if c.retention > 0 {
			name += "/expiring"
		}
		b.Run(name, func(b *testing.B) {
			f := mustNew(b)
			index := uint64(1)
			mustApplyBatch(b, f, entriesAt(b, index, cmdPutNamespace("bench", 0)))
			// The commands are encoded ahead, a chunk at a time with the
			// timer stopped, each with an id of its own.
			var data [][]byte
			next, pos := 0, 0
			encode := func() {
				data, pos = data[:0], 0
				for range 50_000 {
					data = append(data, mustEncode(b, 0, benchPut(next, c.ordered, c.retention)))
					next++
				}
			}
			if c.retention > 0 {
				// Fill the window, so that every measured write expires one.
				encode()
				for len(data) > 0 {
					n := min(c.size, len(data))
					entries := make([]Entry, n)
					for j := range entries {
						index++
						entries[j] = Entry{Index: index, Data: data[j]}
					}
					mustApplyBatch(b, f, entries)
					data = data[n:]
				}
			}
			encode()
			entries := make([]Entry, c.size)
			b.SetBytes(256)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += c.size {
				for j := range entries {
					if pos == len(data) {
						b.StopTimer()
						encode()
						b.StartTimer()
					}
					index++
					entries[j] = Entry{Index: index, Data: data[pos]}
					pos++
				}
				results, err := f.ApplyBatch(entries)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range results {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
					if r.Result != nil && r.Result.Replayed {
						b.Fatal("a command was answered from a request record: the benchmark repeats ids")
					}
				}
			}
		})
	}
}

// BenchmarkCommandCodec measures encoding a put command as the leader does
// before raft.Apply, and decoding it as every replica's FSM does.
func BenchmarkCommandCodec(b *testing.B) {
	cmd := benchPut(1, true, 0)
	data, err := proto.Marshal(cmd)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := proto.Marshal(cmd); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			decodeCommand(Entry{Index: 1, Data: data})
		}
	})
}

// BenchmarkApplyRefusedWrites measures batches of 16 puts of which one is
// refused because its object is over its namespace's quota, as when a
// client writes to a full object again and again: a batch write is
// refused before it writes; a transaction after, which makes the batches
// not yet committed apply again (and commit).
func BenchmarkApplyRefusedWrites(b *testing.B) {
	for _, kind := range []string{"batch-write", "txn"} {
		b.Run(kind, func(b *testing.B) {
			f := mustNew(b)
			index := uint64(1)
			mustApplyBatch(b, f, entriesAt(b, index, cmdPutNamespace("bench", 0), cmdPutNamespace("full", 100)))
			index += 2
			refused := cmdPut("full", "o", "k", string(make([]byte, 200)))
			if kind == "txn" {
				refused = cmdTxn("full", nil, ops(opPut("o", "k", string(make([]byte, 200)))), nil)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				cmds := make([]*raftcmdv1.Command, 16)
				for j := range cmds {
					cmds[j] = benchPut(i*16+j, true, 0)
				}
				cmds[7] = refused
				entries := entriesAt(b, index, cmds...)
				index += uint64(len(entries))
				b.StartTimer()
				results, err := f.ApplyBatch(entries)
				if err != nil {
					b.Fatal(err)
				}
				if !errors.Is(results[7].Err, ErrQuotaExceeded) {
					b.Fatalf("the write to the full object: %v, want a quota error", results[7].Err)
				}
			}
		})
	}
}

// BenchmarkGet measures a serializable read of one key as the API serves
// it: a read transaction, the namespace's check, the key's lookup among
// 10,000 keys of one object (as `cairn bench get` reads), the value copied
// out. Run with
//
//	go test -run '^$' -bench Get ./fsm
func BenchmarkGet(b *testing.B) {
	f := mustNew(b)
	cmds := []*raftcmdv1.Command{cmdPutNamespace("bench", 0)}
	for i := range 10_000 {
		cmd := benchPut(i, true, 0)
		cmd.GetBatchWrite().Object = "o"
		cmds = append(cmds, cmd)
	}
	mustApplyBatch(b, f, entriesAt(b, 1, cmds...))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		key := fmt.Sprintf("k%05d", mix(uint64(i))%10_000)
		if kv, err := f.Get("bench", "o", key); err != nil || len(kv.Value) != 256 {
			b.Fatalf("Get(%s) = %v, %v", key, kv, err)
		}
	}
}
