package server

import (
	"context"
	"time"
)

// The state database is memory-mapped (bbolt), and every page a read
// touches stays resident in the process until the kernel needs it back:
// under writes spread over millions of keys a node's RSS grows toward the
// size of its database (ten million keys: 1.3 GB after ten seconds, for a
// heap of 30 MB). Those pages are clean page cache, but RSS is what
// operators, container limits and OOM killers look at. So the node checks
// its file-backed resident memory every mappedMemoryInterval and, past
// Config.MaxMappedMemoryBytes, hands the map's pages back
// (fsm.ReleaseMapping); they stay in the page cache and fault back in
// without I/O when used. Faulting a page back in costs a microsecond or
// less, so releasing once a second costs little even when the working set
// is larger than the bound.
const mappedMemoryInterval = time.Second

// boundMappedMemory keeps the node's file-backed RSS near
// Config.MaxMappedMemoryBytes until ctx ends. Where the resident size
// cannot be read (not Linux) it does nothing.
func (s *Server) boundMappedMemory(ctx context.Context) {
	if _, ok := fileBackedRSS(); !ok || s.cfg.MaxMappedMemoryBytes < 0 {
		return
	}
	budget := uint64(s.cfg.MaxMappedMemoryBytes)
	t := time.NewTicker(mappedMemoryInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if rss, _ := fileBackedRSS(); rss > budget {
			if err := s.state.ReleaseMapping(); err == nil {
				s.metrics.mappingReleases.Inc()
			}
		}
	}
}
