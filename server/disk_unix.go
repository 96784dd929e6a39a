//go:build unix

package server

import "syscall"

// availableBytes returns the space available to this process on the
// filesystem holding dir.
func availableBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
