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
	// Advice only: a failure changes nothing. The address stays a uintptr
	// (bbolt exports it so): the map outlives this call.
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, db.Info().Data, uintptr(st.Size()), unix.MADV_DONTNEED)
}
