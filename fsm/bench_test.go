package fsm

import (
	"fmt"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"google.golang.org/protobuf/proto"
)

// benchPut is the command of one client put: a 256-byte value under one of
// 10,000 keys, with a request id (as the Go client sends every write):
// random, or, when ordered, time-ordered as the Go client makes them.
func benchPut(i int, ordered bool) *raftcmdv1.Command {
	id := fmt.Sprintf("%016x%016x", mix(uint64(i)), mix(^uint64(i)))
	if ordered {
		id = fmt.Sprintf("%012x%020x", baseTimeMs+int64(i), mix(uint64(i)))
	}
	return &raftcmdv1.Command{
		Version:    CommandVersion,
		TimeUnixMs: baseTimeMs + int64(i),
		RequestId:  id,
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
// which touch a leaf of the request index at a random place each. Run with
//
//	go test -run '^$' -bench ApplyBatch ./fsm
func BenchmarkApplyBatch(b *testing.B) {
	for _, c := range []struct {
		size    int
		ordered bool
	}{{1, true}, {16, true}, {64, true}, {64, false}} {
		size := c.size
		name := fmt.Sprintf("batch=%d/ids=random", size)
		if c.ordered {
			name = fmt.Sprintf("batch=%d/ids=time-ordered", size)
		}
		b.Run(name, func(b *testing.B) {
			f, err := Open(Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			index := uint64(1)
			if _, err := f.ApplyBatch([]Entry{{Index: index, Data: mustEncode(b, index, cmdPutNamespace("bench", 0))}}); err != nil {
				b.Fatal(err)
			}
			data := make([][]byte, 50000)
			for i := range data {
				data[i] = mustEncode(b, 0, benchPut(i, c.ordered))
			}
			entries := make([]Entry, size)
			b.SetBytes(256)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += size {
				for j := range entries {
					index++
					entries[j] = Entry{Index: index, Data: data[int(index)%len(data)]}
				}
				results, err := f.ApplyBatch(entries)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range results {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
			}
		})
	}
}

// BenchmarkCommandCodec measures encoding a put command as the leader does
// before raft.Apply, and decoding it as every replica's FSM does.
func BenchmarkCommandCodec(b *testing.B) {
	cmd := benchPut(1, true)
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
