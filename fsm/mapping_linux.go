package fsm

import (
	"os"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// releaseMapping tells the kernel this process no longer needs the pages of
// the database's memory map that opening it touched. With NoFreelistSync,
// bbolt rebuilds its freelist at open by visiting every page, which leaves
// the whole file resident in the process (ten million keys: 3.4 GB of RSS
// for a heap of 30 MB). The pages stay in the page cache; those the node
// uses fault back in without I/O, so RSS then follows the working set.
func releaseMapping(db *bolt.DB, path string) {
	st, err := os.Stat(path)
	if err != nil || st.Size() == 0 {
		return
	}
	dontNeed(db.Info().Data, st.Size())
}

// releaseMappingIn does the same from inside the read transaction tx,
// while the database is open and in use: the transaction holds bbolt's
// map lock, so the map cannot move or shrink under the call, and only the
// pages this transaction's view of the file spans (tx.Size, never past the
// map's end) are released.
func releaseMappingIn(tx *bolt.Tx) {
	dontNeed(tx.DB().Info().Data, tx.Size())
}

// dontNeed advises the kernel that size bytes of the map at addr are not
// needed. Advice only: a failure changes nothing. The address stays a
// uintptr (bbolt exports it so): the map outlives this call.
func dontNeed(addr uintptr, size int64) {
	if size <= 0 {
		return
	}
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, addr, uintptr(size), unix.MADV_DONTNEED)
}
