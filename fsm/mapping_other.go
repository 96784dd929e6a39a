//go:build !linux

package fsm

import bolt "go.etcd.io/bbolt"

// releaseMapping is Linux-only (mapping_linux.go).
func releaseMapping(*bolt.DB, string) {}

// releaseMappingIn is Linux-only (mapping_linux.go).
func releaseMappingIn(*bolt.Tx) {}
