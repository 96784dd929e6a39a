//go:build !linux

package server

// fileBackedRSS is Linux-only (memory_linux.go).
func fileBackedRSS() (uint64, bool) { return 0, false }
