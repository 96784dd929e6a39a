// Package fsync makes changes to directories durable, for the packages
// that write files (the state machine and the Raft log) alike.
package fsync
