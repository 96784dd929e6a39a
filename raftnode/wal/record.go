package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/hashicorp/raft"
)

// The on-disk format (little endian), version 2. A segment file starts
// with a segment header:
//
//	0  magic "CAIRNWAL"
//	8  u32 format version
//	12 u32 flags (segmentFresh: created while the log held no entries)
//	16 u64 sequence number (a newer segment has a higher one)
//	24 u64 index of the segment's first record
//	32 u32 CRC-32C of bytes 0..32
//	36 u32 zero
//
// then holds records back to back, one per log entry, each a record header
//
//	0  u32 payload length
//	4  u32 CRC-32C of the payload
//	8  u64 tag: the first index not yet durable when the record was written
//	   (version 1: the first index of the StoreLogs call that wrote it)
//	16 u32 flags (flagBatchEnd: the last entry of its StoreLogs call)
//	20 u32 CRC-32C of bytes 0..20 (the header check)
//
// and its payload
//
//	0  u64 index
//	8  u64 term
//	16 u8  type
//	17 i64 AppendedAt in Unix nanoseconds (0: the zero time)
//	25 u32 data length, the data
//	.. u32 extensions length, the extensions
//
// The header check tells a record header from garbage (a torn write, zeros
// a crash left past the end) before its length is trusted; the tag tells
// records written while an index was not yet durable, which a crash may
// have torn, from records written after it was (recovery in segment.go).
// Version 1 synced each write before the next, so its tag, the write's
// first index, means the same; version 2 segments are appended while
// earlier writes are still being synced (durable.go). A version 1 segment
// is read, never appended to: the next append starts a new segment.
const (
	segmentMagic      = "CAIRNWAL"
	formatVersion     = 2
	stableVersion     = 1
	segmentHeaderSize = 40
	segmentFresh      = 1
	recordHeaderSize  = 24
	minPayload        = 8 + 8 + 1 + 8 + 4 + 4
	flagBatchEnd      = 1
)

// FormatVersion is the version of the segment format, as `cairn version`
// prints it (the stable file's is 1).
const FormatVersion = formatVersion

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// segmentHeader is what a segment file's first bytes hold.
type segmentHeader struct {
	version    uint32
	seq, first uint64
	// fresh: the segment was created while the log held no entries (a new
	// log, or the first append after everything was deleted), so every
	// older segment is a leftover (recovery in segment.go).
	fresh bool
}

func (h segmentHeader) encode() []byte {
	b := make([]byte, segmentHeaderSize)
	copy(b, segmentMagic)
	le.PutUint32(b[8:], h.version)
	if h.fresh {
		le.PutUint32(b[12:], segmentFresh)
	}
	le.PutUint64(b[16:], h.seq)
	le.PutUint64(b[24:], h.first)
	le.PutUint32(b[32:], checksum(b[:32]))
	return b
}

func decodeSegmentHeader(b []byte) (segmentHeader, error) {
	if len(b) < segmentHeaderSize {
		return segmentHeader{}, fmt.Errorf("segment header: %d bytes, want %d", len(b), segmentHeaderSize)
	}
	if string(b[:8]) != segmentMagic {
		return segmentHeader{}, errors.New("segment header: not a cairn WAL segment")
	}
	v := le.Uint32(b[8:])
	if v != 1 && v != formatVersion {
		return segmentHeader{}, fmt.Errorf("segment header: format version %d, this build reads 1 and %d", v, formatVersion)
	}
	if checksum(b[:32]) != le.Uint32(b[32:]) {
		return segmentHeader{}, errors.New("segment header: checksum mismatch")
	}
	flags := le.Uint32(b[12:])
	if flags&^segmentFresh != 0 || le.Uint32(b[36:]) != 0 {
		return segmentHeader{}, fmt.Errorf("segment header: unknown flags %#x", flags)
	}
	return segmentHeader{version: v, seq: le.Uint64(b[16:]), first: le.Uint64(b[24:]), fresh: flags&segmentFresh != 0}, nil
}

var le = binary.LittleEndian

// recordHeader is the fixed part in front of each record's payload.
type recordHeader struct {
	length uint32
	crc    uint32
	tag    uint64
	flags  uint32
}

// appendRecord appends l as one record, tagged tag (at most l's index),
// to buf; end marks the last entry of its StoreLogs call.
func appendRecord(buf []byte, l *raft.Log, tag uint64, end bool) []byte {
	start := len(buf)
	payloadLen := minPayload + len(l.Data) + len(l.Extensions)
	buf = append(buf, make([]byte, recordHeaderSize)...)
	p := len(buf)
	buf = le.AppendUint64(buf, l.Index)
	buf = le.AppendUint64(buf, l.Term)
	buf = append(buf, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	buf = le.AppendUint64(buf, uint64(at))
	buf = le.AppendUint32(buf, uint32(len(l.Data)))
	buf = append(buf, l.Data...)
	buf = le.AppendUint32(buf, uint32(len(l.Extensions)))
	buf = append(buf, l.Extensions...)
	var flags uint32
	if end {
		flags = flagBatchEnd
	}
	h := buf[start:p]
	le.PutUint32(h[0:], uint32(payloadLen))
	le.PutUint32(h[4:], checksum(buf[p:]))
	le.PutUint64(h[8:], tag)
	le.PutUint32(h[16:], flags)
	le.PutUint32(h[20:], checksum(h[:20]))
	return buf
}

// decodeRecordHeader parses b's first recordHeaderSize bytes; an error
// means they are not a record header (garbage, zeros, a torn write).
func decodeRecordHeader(b []byte) (recordHeader, error) {
	if len(b) < recordHeaderSize {
		return recordHeader{}, errors.New("record header cut short")
	}
	if checksum(b[:20]) != le.Uint32(b[20:]) {
		return recordHeader{}, errors.New("record header check mismatch")
	}
	h := recordHeader{length: le.Uint32(b[0:]), crc: le.Uint32(b[4:]), tag: le.Uint64(b[8:]), flags: le.Uint32(b[16:])}
	if h.length < minPayload {
		return recordHeader{}, fmt.Errorf("record length %d below the minimum %d", h.length, minPayload)
	}
	if h.flags&^flagBatchEnd != 0 {
		return recordHeader{}, fmt.Errorf("unknown record flags %#x", h.flags)
	}
	return h, nil
}

// decodeRecord decodes a whole record (header and payload) into l; l's
// Data and Extensions alias b. An error means the record is damaged.
func decodeRecord(b []byte, l *raft.Log) (recordHeader, error) {
	h, err := decodeRecordHeader(b)
	if err != nil {
		return h, err
	}
	p := b[recordHeaderSize:]
	if uint64(len(p)) != uint64(h.length) {
		return h, fmt.Errorf("record of %d bytes holds %d", h.length, len(p))
	}
	if checksum(p) != h.crc {
		return h, errors.New("record checksum mismatch")
	}
	return h, decodePayload(p, l)
}

func decodePayload(p []byte, l *raft.Log) error {
	if len(p) < minPayload {
		return fmt.Errorf("payload of %d bytes, below the minimum %d", len(p), minPayload)
	}
	l.Index = le.Uint64(p[0:])
	l.Term = le.Uint64(p[8:])
	l.Type = raft.LogType(p[16])
	l.AppendedAt = time.Time{}
	if at := int64(le.Uint64(p[17:])); at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	rest := p[25:]
	n := uint64(le.Uint32(rest))
	rest = rest[4:]
	if n > uint64(len(rest))-4 {
		return fmt.Errorf("data length %d past the payload's end", n)
	}
	l.Data, rest = nilIfEmpty(rest[:n]), rest[n:]
	n = uint64(le.Uint32(rest))
	rest = rest[4:]
	if n != uint64(len(rest)) {
		return fmt.Errorf("extensions length %d, the payload holds %d", n, len(rest))
	}
	l.Extensions = nilIfEmpty(rest)
	return nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
