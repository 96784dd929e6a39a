package raftnode

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairndb/cairn/raftnode/wal"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkStoreLogs appends batches of 256-byte entries, synced, to the
// WAL and to raft-boltdb as releases before it were configured: what a
// follower waits for before it acknowledges a batch (the WAL's append
// returns once written: the time includes the wait for its sync).
func BenchmarkStoreLogs(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) raft.LogStore
	}{
		{"wal", func(b *testing.B) raft.LogStore {
			s, err := wal.Open(b.TempDir(), wal.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{"boltdb", func(b *testing.B) raft.LogStore {
			s, err := raftboltdb.New(raftboltdb.Options{
				Path:        filepath.Join(b.TempDir(), "raft.db"),
				BoltOptions: &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType},
			})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			return s
		}},
	}
	data := make([]byte, 256)
	for _, batch := range []int{1, 16, 256} {
		for _, st := range stores {
			b.Run(fmt.Sprintf("%s/batch=%d", st.name, batch), func(b *testing.B) {
				s := st.open(b)
				logs := make([]*raft.Log, batch)
				next := uint64(1)
				b.SetBytes(int64(batch * len(data)))
				for b.Loop() {
					for i := range logs {
						logs[i] = &raft.Log{Index: next + uint64(i), Term: 1, Data: data, AppendedAt: time.Now()}
					}
					if err := s.StoreLogs(logs); err != nil {
						b.Fatal(err)
					}
					if w, ok := s.(*wal.Store); ok {
						if err := w.Synced(); err != nil {
							b.Fatal(err)
						}
					}
					next += uint64(batch)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/entry")
			})
		}
	}
}
