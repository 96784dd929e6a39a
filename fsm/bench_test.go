package fsm

import (
	"fmt"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"google.golang.org/protobuf/proto"
)

// benchPut is the command of one client put: a 256-byte value under one of
// 10,000 keys, with a request id (as the Go client sends every write).
func benchPut(i int) *raftcmdv1.Command {
	return &raftcmdv1.Command{
		Version:    CommandVersion,
		TimeUnixMs: baseTimeMs + int64(i),
		RequestId:  fmt.Sprintf("0f8e2c1a-5b7d-4e3f-9a6b-%012d", i),
		Op: &raftcmdv1.Command_BatchWrite{BatchWrite: &raftcmdv1.BatchWrite{
			Namespace: "bench", Object: fmt.Sprintf("o%d", i%100),
			Puts: []*raftcmdv1.KeyPut{{Key: fmt.Sprintf("k%05d", i%10000), Value: make([]byte, 256), Encoding: raftcmdv1.ValueEncoding_VALUE_ENCODING_BINARY}},
		}},
	}
}

// BenchmarkApplyBatch measures the FSM's apply path: decoding, request-id
// bookkeeping, the bbolt writes and the commit, per command, for the batch
// sizes Raft hands over (1 when idle, up to 64 under load). Run with
//
//	go test -run '^$' -bench ApplyBatch ./fsm
func BenchmarkApplyBatch(b *testing.B) {
	for _, size := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			f, err := Open(Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			index := uint64(1)
			if _, err := f.ApplyBatch([]Entry{{Index: index, Data: mustEncode(b, index, cmdPutNamespace("bench", 0))}}); err != nil {
				b.Fatal(err)
			}
			data := make([][]byte, 10000)
			for i := range data {
				data[i] = mustEncode(b, 0, benchPut(i))
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
	cmd := benchPut(1)
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
