//go:build !benchceiling

package raftnode

// benchCeiling: see ceiling.go.
const benchCeiling = false
