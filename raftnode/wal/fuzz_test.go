package wal

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

// FuzzDecodeRecord feeds arbitrary bytes to the record decoder, which
// reads whatever a damaged or torn file holds: it must never panic, and a
// record it accepts must encode back to the same bytes (nothing accepted
// that the encoder would not write).
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, entry(3, 2), 3, true))
	f.Add(appendRecord(nil, entry(12, 1), 10, false))
	f.Add(appendRecord(nil, &raft.Log{Index: 1}, 1, true))
	f.Add([]byte{})
	f.Add(make([]byte, recordHeaderSize+minPayload))
	f.Fuzz(func(t *testing.T, b []byte) {
		var l raft.Log
		h, err := decodeRecord(b, &l)
		if err != nil {
			return
		}
		again := appendRecord(nil, &l, h.tag, h.flags&flagBatchEnd != 0)
		if !bytes.Equal(again, b) {
			t.Fatalf("decoded %+v from %x, which encodes as %x", l, b, again)
		}
	})
}

// FuzzDecodeStable does the same for a slot of the stable file.
func FuzzDecodeStable(f *testing.F) {
	f.Add(encodeSlot(3, map[string][]byte{"CurrentTerm": {0, 0, 0, 0, 0, 0, 0, 7}, "LastVoteCand": []byte("n1")}))
	f.Add(encodeSlot(1, map[string][]byte{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, kv, err := decodeSlot(b)
		if err != nil {
			return
		}
		if again := encodeSlot(seq, kv); !bytes.Equal(again, b[:len(again)]) {
			t.Fatalf("decoded %d %q from %x, which encodes as %x", seq, kv, b, again)
		}
	})
}
