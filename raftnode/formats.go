package raftnode

import (
	"fmt"

	"github.com/cairndb/cairn/raftnode/wal"
	"github.com/hashicorp/raft"
)

// Format is one wire or disk format a build reads and writes, as `cairn
// version` prints it.
type Format struct {
	Name, Version string
}

// Formats lists the formats of the Raft port and Raft's own stores. The
// stream kind byte is the Raft port's version: a new kind of stream gets a
// new byte, and a node that does not know it drops the connection (and
// logs it) without reading further. The raft log's format versions the
// segment and stable files of package wal; a node of an older release
// kept its log in raft-boltdb's raft.db, which it migrates on start.
func Formats() []Format {
	return []Format{
		{"raft port stream kinds", fmt.Sprintf("0x%02X raft, 0x%02X peer API, 0x%02X probe", streamRaft, streamPeer, streamProbe)},
		{"raft protocol", fmt.Sprintf("hashicorp/raft protocol %d, snapshot version %d", raft.ProtocolVersionMax, raft.SnapshotVersionMax)},
		{"raft log", fmt.Sprintf("format %d", wal.FormatVersion)},
	}
}
