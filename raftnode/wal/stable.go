package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cairndb/cairn/internal/fsync"
)

// ErrNotFound is what Get and GetUint64 return for a key never set. Its
// text is not prefixed like this module's other errors: hashicorp/raft
// recognises a missing key by the text "not found" (raft-boltdb's
// ErrKeyNotFound), and treats any other error as a failure to start.
var ErrNotFound = errors.New("not found")

// The stable file holds Raft's few durable keys (CurrentTerm,
// LastVoteTerm, LastVoteCand) in two slots of equal size, as bbolt keeps
// two meta pages: a Set overwrites the older slot in place with the whole
// new state and a higher sequence number, then fdatasyncs, and Open takes
// the valid slot with the higher sequence. A torn write spoils only the
// slot being written, whose Set never returned. Overwriting blocks the
// file already has needs no free space: Raft panics when it cannot store a
// new term, and a node whose disk is full must still take part in
// elections (cmd/cairn TestDiskFullWithoutReserve).
//
// A slot (little endian): magic "CAIRNSTB", u32 format version, u32 body
// length n, u64 sequence, the body (u32 key count, then per key in key
// order: u32 key length, key, u32 value length, value), u32 CRC-32C of
// everything before it, zeros to the slot's end. Slots are stableSlot
// bytes, or a multiple of it when the state needs more; the file is
// created, or regrown, whole under a temporary name and renamed.
const (
	stableName       = "stable"
	stableMagic      = "CAIRNSTB"
	stableSlot       = 4096
	stableHeaderSize = 24
)

type stableFile struct {
	mu     sync.Mutex
	path   string
	noSync bool
	f      *os.File
	slot   int64  // slot size: the file holds two
	seq    uint64 // sequence of the newest slot
	newest int64  // which slot holds it (0 or 1)
	kv     map[string][]byte
}

func (st *stableFile) open(dir string, noSync bool) error {
	st.path, st.noSync = filepath.Join(dir, stableName), noSync
	if err := os.Remove(st.path + ".tmp"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("wal: %w", err)
	}
	f, err := os.OpenFile(st.path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		// Created now, empty, so that later Sets only overwrite: a node
		// whose disk is already full then fails to start with the reason,
		// where a file created at the first term would make Raft panic.
		st.kv = map[string][]byte{}
		return st.create(encodeSlot(st.seq+1, st.kv))
	}
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	b, err := io.ReadAll(f)
	if err == nil {
		st.slot, st.newest, st.seq, st.kv, err = decodeStableFile(b)
		if err != nil {
			err = &DamageError{Path: st.path, Reason: err.Error()}
		}
	}
	if err != nil {
		_ = f.Close()
		return err
	}
	st.f = f
	return nil
}

func (st *stableFile) close() {
	if st.f != nil {
		_ = st.f.Close()
		st.f = nil
	}
}

// readStable reads the stable file at path without changing it; a missing
// file holds nothing.
func readStable(path string) (map[string][]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	_, _, _, kv, err := decodeStableFile(b)
	if err != nil {
		return nil, &DamageError{Path: path, Reason: err.Error()}
	}
	return kv, nil
}

// decodeStableFile returns the slot size, which slot is the newest, its
// sequence and its keys.
func decodeStableFile(b []byte) (slot, newest int64, seq uint64, kv map[string][]byte, err error) {
	slot = int64(len(b) / 2)
	if slot < stableSlot || slot%stableSlot != 0 || int64(len(b)) != 2*slot {
		return 0, 0, 0, nil, fmt.Errorf("stable file of %d bytes, not two slots", len(b))
	}
	var errs [2]error
	newest = -1
	for i := range int64(2) {
		s, m, err := decodeSlot(b[i*slot : (i+1)*slot])
		if errs[i] = err; err == nil && (newest < 0 || s > seq) {
			newest, seq, kv = i, s, m
		}
	}
	if newest < 0 {
		return 0, 0, 0, nil, fmt.Errorf("both slots damaged: %v; %v", errs[0], errs[1])
	}
	return slot, newest, seq, kv, nil
}

// encodeSlot encodes kv under sequence seq, without the padding.
func encodeSlot(seq uint64, kv map[string][]byte) []byte {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := make([]byte, stableHeaderSize, stableHeaderSize+64)
	copy(b, stableMagic)
	le.PutUint32(b[8:], stableVersion)
	le.PutUint64(b[16:], seq)
	b = le.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = le.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
		b = le.AppendUint32(b, uint32(len(kv[k])))
		b = append(b, kv[k]...)
	}
	le.PutUint32(b[12:], uint32(len(b)-stableHeaderSize))
	return le.AppendUint32(b, checksum(b))
}

// decodeSlot decodes one slot (trailing padding allowed).
func decodeSlot(b []byte) (uint64, map[string][]byte, error) {
	if len(b) < stableHeaderSize+8 || string(b[:8]) != stableMagic {
		return 0, nil, errors.New("not a cairn stable slot")
	}
	if v := le.Uint32(b[8:]); v != stableVersion {
		return 0, nil, fmt.Errorf("stable slot format version %d, this build reads %d", v, stableVersion)
	}
	n := uint64(le.Uint32(b[12:]))
	if n > uint64(len(b)-stableHeaderSize-4) {
		return 0, nil, errors.New("stable slot cut short")
	}
	end := stableHeaderSize + int(n)
	if checksum(b[:end]) != le.Uint32(b[end:]) {
		return 0, nil, errors.New("stable slot checksum mismatch")
	}
	rest := b[stableHeaderSize:end]
	if len(rest) < 4 {
		return 0, nil, errors.New("stable slot cut short")
	}
	count := le.Uint32(rest)
	rest = rest[4:]
	field := func() ([]byte, error) {
		if len(rest) < 4 || uint64(le.Uint32(rest)) > uint64(len(rest)-4) {
			return nil, errors.New("stable slot cut short")
		}
		l := le.Uint32(rest)
		v := rest[4 : 4+l]
		rest = rest[4+l:]
		return v, nil
	}
	kv := map[string][]byte{}
	for range count {
		k, err := field()
		if err != nil {
			return 0, nil, err
		}
		v, err := field()
		if err != nil {
			return 0, nil, err
		}
		kv[string(k)] = slices.Clone(v)
	}
	if len(rest) != 0 {
		return 0, nil, errors.New("stable slot holds bytes past its keys")
	}
	return le.Uint64(b[16:]), kv, nil
}

// Set stores val under key durably: one overwrite of the older slot and
// one fdatasync.
func (s *Store) Set(key, val []byte) error {
	st := &s.stable
	st.mu.Lock()
	defer st.mu.Unlock()
	kv := make(map[string][]byte, len(st.kv)+1)
	for k, v := range st.kv {
		kv[k] = v
	}
	kv[string(key)] = slices.Clone(val)
	b := encodeSlot(st.seq+1, kv)
	var err error
	if st.f == nil || int64(len(b)) > st.slot {
		err = st.create(b)
	} else {
		err = st.overwrite(b)
	}
	if err != nil {
		return err
	}
	st.kv = kv
	return nil
}

// overwrite writes the encoded slot b over the older slot.
func (st *stableFile) overwrite(b []byte) error {
	target := 1 - st.newest
	if _, err := st.f.WriteAt(b, target*st.slot); err != nil {
		return fmt.Errorf("wal: write %s: %w", st.path, err)
	}
	if !st.noSync {
		if err := syncData(st.f); err != nil {
			return fmt.Errorf("wal: sync %s: %w", st.path, err)
		}
	}
	st.seq++
	st.newest = target
	return nil
}

// create writes a new stable file whose slots both hold the encoded slot
// b, large enough for it, under a temporary name, and renames it over the
// old one.
func (st *stableFile) create(b []byte) error {
	slot := (int64(len(b)) + stableSlot - 1) / stableSlot * stableSlot
	whole := make([]byte, 2*slot)
	copy(whole, b)
	copy(whole[slot:], b)
	tmp := st.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	_, err = f.Write(whole)
	if err == nil && !st.noSync {
		err = syncData(f)
	}
	if err == nil {
		// The old file is closed first: Windows renames nothing over an
		// open file. Until a create succeeds, Set creates again.
		st.close()
		err = os.Rename(tmp, st.path)
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("wal: write %s: %w", st.path, err)
	}
	if !st.noSync {
		if err := fsync.Dir(filepath.Dir(st.path)); err != nil {
			_ = f.Close()
			return fmt.Errorf("wal: sync %s: %w", filepath.Dir(st.path), err)
		}
	}
	st.f, st.slot, st.newest = f, slot, 0
	st.seq++
	return nil
}

// Get returns the value of key; ErrNotFound when it was never set.
func (s *Store) Get(key []byte) ([]byte, error) {
	st := &s.stable
	st.mu.Lock()
	defer st.mu.Unlock()
	v, ok := st.kv[string(key)]
	if !ok {
		return nil, ErrNotFound
	}
	return slices.Clone(v), nil
}

// SetUint64 stores val under key durably (8 bytes, big endian, as
// raft-boltdb stored it).
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value SetUint64 stored under key; ErrNotFound
// when it was never set.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("wal: %s holds %d bytes, not a uint64", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
