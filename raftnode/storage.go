package raftnode

import (
	"fmt"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/hashicorp/raft"
)

// Backoff of the FSM's storage retries: a full disk is usually freed by an
// operator within minutes, and a retry costs one failed bbolt commit.
const (
	storageRetryMin = 50 * time.Millisecond
	storageRetryMax = 2 * time.Second
)

// retryStorage calls apply again, backing off, until it succeeds or the
// node shuts down (then it returns ErrShutdown). first is the failure that
// made the FSM stall; StorageError reports the latest one meanwhile.
func (n *Node) retryStorage(first error, apply func() ([]fsm.Result, error)) ([]fsm.Result, error) {
	err := first
	n.storageErr.Store(&err)
	n.log.Error("cannot apply committed entries; retrying until the disk accepts writes (nothing is skipped, queries keep answering)", "error", err)
	if n.raft.State() == raft.Leader {
		// A leader that cannot apply answers no write and no read barrier:
		// let a member whose disk works lead. Raft's main loop still runs
		// (it waits only once 128 batches are queued), so the transfer can
		// go through; it is asynchronous because this is Raft's FSM
		// goroutine.
		n.log.Warn("handing leadership to another voter while this node cannot apply")
		go func() {
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer failed", "error", err)
			}
		}()
	}
	start, attempts := time.Now(), 1
	wait := storageRetryMin
	for {
		t := time.NewTimer(wait)
		select {
		case <-n.stop:
			t.Stop()
			return nil, fmt.Errorf("%w: while retrying the state database: %w", ErrShutdown, err)
		case <-t.C:
		}
		results, retryErr := apply()
		attempts++
		if retryErr == nil {
			n.storageErr.Store(nil)
			n.log.Info("committed entries applied again after a storage failure", "attempts", attempts, "stalled", time.Since(start).Round(time.Millisecond))
			return results, nil
		}
		err = retryErr
		n.storageErr.Store(&err)
		wait = min(2*wait, storageRetryMax)
	}
}

// StorageError returns why this node's state machine cannot apply
// committed entries right now (its database cannot be written: a full
// disk, an I/O error), or nil when it can. While it is set the node
// applies nothing, so a leader commits nothing new and reads that wait for
// the commit index wait; queries of the state as it was still answer.
func (n *Node) StorageError() error {
	if p := n.storageErr.Load(); p != nil {
		return *p
	}
	return nil
}
