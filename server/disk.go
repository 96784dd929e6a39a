package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	peerv1 "github.com/cairndb/cairn/api/cairn/peer/v1"
	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The free-space reserve keeps a full disk from ever reaching Raft or the
// state database, where a failed write stalls or stops a node (hashicorp/raft
// panics when it cannot persist a new term). Every node measures the free
// space of its data directories; the leader asks every member for theirs
// and refuses writes that grow the state while any member is below its
// reserve, as etcd raises its cluster-wide NOSPACE alarm. Deletes still
// pass, so users can make room; reads are not affected.
const (
	// diskCheckInterval is how often a node measures its free space and
	// the leader asks the other members for theirs.
	diskCheckInterval = 500 * time.Millisecond
	// diskReportTTL is how long a member's report counts: a member that
	// stops answering (down, partitioned) writes nothing meanwhile.
	diskReportTTL = 5 * time.Second
)

// diskReport is one member's free space as last measured.
type diskReport struct {
	node string
	// measured is the free space the member measured; free is what the
	// estimate starts from: measured, or less (merge).
	measured, free uint64
	reserve        uint64 // 0: the member does not watch its free space
	at             time.Time
	// proposed is the leader's count of proposed bytes (Server.proposed)
	// when the report arrived: what was proposed since will take up to
	// twice its size on the member (its log and its state) before the
	// next report shows it.
	proposed uint64
}

// freeNow estimates the member's free space now, when proposed bytes have
// been proposed in all.
func (r diskReport) freeNow(proposed uint64) uint64 {
	if proposed <= r.proposed {
		// Read before a report that arrived meanwhile: nothing since.
		return r.free
	}
	used := 2 * (proposed - r.proposed)
	if used >= r.free {
		return 0
	}
	return r.free - used
}

// merge returns the new report m of the same member, given r, the one
// before it. A member writes what was proposed some time after: its log
// and above all its state lag the leader, so a measurement taken during
// a burst of writes may not show yet what was proposed before it, and
// would raise the estimate past what the disk will hold. So when writes
// were proposed since r, the estimate is at most r's measurement less
// twice what was proposed since; with nothing proposed since (writes
// refused, say), the measurement counts as is. Bounding by r's measurement,
// not by r's estimate, keeps the caution to one interval: over many, an
// estimate would drift below the disk (overwrites and compaction free what
// it counts). The Raft log grows by what it stores, in small preallocated
// steps: bursts outran the bare measurement, which bbolt's larger growth
// steps of raft.db used to hide.
func (r diskReport) merge(m diskReport) diskReport {
	if r.at.IsZero() || m.proposed <= r.proposed {
		return m
	}
	var bound uint64
	if used := 2 * (m.proposed - r.proposed); used < r.measured {
		bound = r.measured - used
	}
	m.free = min(m.free, bound)
	return m
}

func (r diskReport) low(proposed uint64) bool {
	return r.reserve > 0 && r.freeNow(proposed) < r.reserve
}

// diskGuard holds this node's measurement and, on the leader, the other
// members' reports.
type diskGuard struct {
	mu    sync.Mutex
	self  diskReport
	err   error                 // why the last measurement failed
	peers map[string]diskReport // by member id; only while leading
	// conns are the leader's connections for asking, apart from those that
	// forward requests: a member that restarts leaves a connection backing
	// off its reconnects, which must not fail a forwarded request.
	conns peers
}

// freeBytes returns the least space available to this process on the
// filesystems holding dirs.
func freeBytes(dirs []string) (uint64, error) {
	var least uint64
	for i, d := range dirs {
		free, err := availableBytes(d)
		if err != nil {
			return 0, fmt.Errorf("server: free space of %s: %w", d, err)
		}
		if i == 0 || free < least {
			least = free
		}
	}
	return least, nil
}

// measureDisk measures this node's free space, logging when it crosses
// the reserve.
func (s *Server) measureDisk() {
	free, err := freeBytes(s.dataDirs)
	g := &s.disk
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		if g.err == nil {
			s.log.Error("cannot measure free disk space", "err", err)
		}
		g.err = err
		return
	}
	g.err = nil
	proposed := s.proposed.Load()
	was := g.self.low(proposed)
	g.self = g.self.merge(diskReport{node: s.node.ID(), measured: free, free: free, reserve: s.reserve(), at: time.Now(), proposed: proposed})
	switch {
	case g.self.low(proposed) && !was:
		s.log.Warn("free disk space below the reserve: the cluster refuses writes until space is freed", "free", free, "min_free_disk_bytes", g.self.reserve)
	case !g.self.low(proposed) && was:
		s.log.Info("free disk space above the reserve again", "free", free, "min_free_disk_bytes", g.self.reserve)
	}
}

// reserve is the configured reserve in bytes; 0 when it is off.
func (s *Server) reserve() uint64 {
	if s.cfg.MinFreeDiskBytes < 0 || len(s.dataDirs) == 0 {
		return 0
	}
	return uint64(s.cfg.MinFreeDiskBytes)
}

// watchDisk measures this node's free space, and while it leads asks the
// other members for theirs, every diskCheckInterval until ctx ends.
func (s *Server) watchDisk(ctx context.Context) {
	t := time.NewTicker(diskCheckInterval)
	defer t.Stop()
	defer s.disk.conns.close()
	for {
		if len(s.dataDirs) > 0 {
			s.measureDisk()
		}
		if s.node.IsLeader() {
			s.pollPeerDisks(ctx)
		} else {
			s.disk.mu.Lock()
			s.disk.peers = nil
			s.disk.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pollPeerDisks asks every other member for its free space, at once.
func (s *Server) pollPeerDisks(ctx context.Context) {
	servers, err := s.node.Servers()
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	for _, m := range servers {
		if m.ID == s.node.ID() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := s.disk.conns.conn(m.Address, s.node.DialPeer)
			if err != nil {
				return
			}
			cctx, cancel := context.WithTimeout(ctx, diskCheckInterval)
			defer cancel()
			resp, err := peerClient(conn).DiskStatus(cctx, &peerv1.DiskStatusRequest{})
			if err != nil {
				return // an unreachable member is not writing
			}
			proposed := s.proposed.Load()
			r := diskReport{node: m.ID, measured: resp.FreeBytes, free: resp.FreeBytes, reserve: resp.MinFreeBytes, at: time.Now(), proposed: proposed}
			g := &s.disk
			g.mu.Lock()
			r = g.peers[m.ID].merge(r)
			if g.peers == nil {
				g.peers = make(map[string]diskReport)
			}
			if r.low(proposed) && !g.peers[m.ID].low(proposed) {
				s.log.Warn("a member's free disk space is below its reserve: writes are refused until space is freed", "member", m.ID, "free", r.free, "min_free_disk_bytes", r.reserve)
			}
			g.peers[m.ID] = r
			g.mu.Unlock()
		}()
	}
	wg.Wait()
}

// diskStatus answers the leader's DiskStatus call with a fresh
// measurement (a statfs call is cheap).
func (s *Server) diskStatus() *peerv1.DiskStatusResponse {
	if len(s.dataDirs) > 0 {
		s.measureDisk()
	}
	g := &s.disk
	g.mu.Lock()
	defer g.mu.Unlock()
	return &peerv1.DiskStatusResponse{NodeId: s.node.ID(), FreeBytes: g.self.measured, MinFreeBytes: g.self.reserve}
}

// checkDisk is the leader's gate before it appends cmd: Unavailable while
// its own state machine cannot write its database (nothing would apply),
// and, unless cmd only deletes, ResourceExhausted while any member's free
// space is below its reserve, as last measured less twice what was
// proposed since. It counts cmd's bytes as proposed when it lets it pass.
func (s *Server) checkDisk(cmd *raftcmdv1.Command) error {
	if err := s.node.StorageError(); err != nil {
		return status.Errorf(codes.Unavailable, "node %s (the leader) cannot write its state database and retries until space is freed: %s", s.node.ID(), userMessage(err))
	}
	if onlyDeletes(cmd) {
		return nil
	}
	proposed := s.proposed.Load()
	g := &s.disk
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.self.low(proposed) {
		return lowDisk(g.self, proposed)
	}
	if len(g.peers) > 0 {
		now := time.Now()
		for _, r := range g.peers {
			if now.Sub(r.at) < diskReportTTL && r.low(proposed) {
				return lowDisk(r, proposed)
			}
		}
	}
	s.proposed.Add(uint64(proto.Size(cmd)))
	return nil
}

// lowDisk is the refusal of a write while r's free space, less twice what
// was proposed since it was measured, is below its reserve.
func lowDisk(r diskReport, proposed uint64) error {
	return status.Errorf(codes.ResourceExhausted,
		"node %s has %s free in its data directory, below its reserve of %s (--min-free-disk-bytes): writes are refused until space is freed there; reads and deletes still work",
		r.node, mib(r.freeNow(proposed)), mib(r.reserve))
}

// diskGauges are the disk guard's metrics.
func (s *Server) diskGauges() []prometheus.Collector {
	self := func() diskReport {
		s.disk.mu.Lock()
		defer s.disk.mu.Unlock()
		return s.disk.self
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	bit := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	return []prometheus.Collector{
		gauge("cairn_disk_free_bytes", "Free space of this node's data directory, as last measured.", func() float64 { return float64(self().free) }),
		gauge("cairn_disk_low", "1 while this node's free space is below --min-free-disk-bytes: the leader refuses writes.", func() float64 {
			return bit(self().low(s.proposed.Load()))
		}),
		gauge("cairn_storage_stalled", "1 while this node's state machine cannot write its database and retries: it applies nothing.", func() float64 {
			return bit(s.node.StorageError() != nil)
		}),
	}
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// onlyDeletes reports whether cmd only removes state (or membership
// records), which the leader accepts even while a disk is low: it is how
// users make room.
func onlyDeletes(cmd *raftcmdv1.Command) bool {
	switch op := cmd.Op.(type) {
	case *raftcmdv1.Command_DeleteNamespace, *raftcmdv1.Command_DeleteObject,
		*raftcmdv1.Command_DeleteAlarm, *raftcmdv1.Command_RemoveMember:
		return true
	case *raftcmdv1.Command_BatchWrite:
		return len(op.BatchWrite.Puts) == 0
	}
	return false
}
