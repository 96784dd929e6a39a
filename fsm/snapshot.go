package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/cairndb/cairn/internal/fsync"

	bolt "go.etcd.io/bbolt"
)

// Snapshot format (see DESIGN.md):
//
//	header:  "CAIRNSNP" | version uint32 BE | applied index uint64 BE
//	records: 'B' uvarint(len) bucket            (switch to a bucket)
//	         'R' uvarint(len) key uvarint(len) value
//	trailer: 'E' crc32c (uint32 BE) of every byte before the checksum
//
// Buckets and keys come in byte order, so two replicas with the same state
// write the same bytes.
const (
	snapshotMagic   = "CAIRNSNP"
	SnapshotVersion = 1
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Snapshot is a point-in-time view of the state, held open as a read
// transaction until Release.
type Snapshot struct {
	f  *FSM
	db *bolt.DB
	tx *bolt.Tx
}

// Snapshot captures the current state. It is cheap: it opens a read
// transaction. The caller must Release the snapshot.
func (f *FSM) Snapshot() (*Snapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return nil, ErrClosed
	}
	if err := f.flush(); err != nil {
		return nil, err
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("fsm: snapshot: %w", err)
	}
	f.snaps.Lock()
	defer f.snaps.Unlock()
	if f.open == nil {
		f.open = map[*bolt.DB]int{}
	}
	f.open[f.db]++
	return &Snapshot{f: f, db: f.db, tx: tx}, nil
}

// Index returns the applied index the snapshot captured.
func (s *Snapshot) Index() uint64 { return readU64(s.tx.Bucket(bucketMeta).Get(metaApplied)) }

// WriteTo streams the snapshot to w. It may run concurrently with applies.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: bufio.NewWriterSize(w, 256<<10), crc: crc32.New(crcTable)}
	cw.Write([]byte(snapshotMagic))
	cw.Write(binary.BigEndian.AppendUint32(nil, SnapshotVersion))
	cw.Write(u64(s.Index()))
	err := forEachRecord(s.tx, true, func(bucket []byte) {
		cw.Write(binary.AppendUvarint([]byte{'B'}, uint64(len(bucket))))
		cw.Write(bucket)
	}, func(k, v []byte) {
		cw.Write(binary.AppendUvarint([]byte{'R'}, uint64(len(k))))
		cw.Write(k)
		cw.Write(binary.AppendUvarint(nil, uint64(len(v))))
		cw.Write(v)
	})
	if err != nil {
		return cw.n, err
	}
	cw.Write([]byte{'E'})
	cw.Write(binary.BigEndian.AppendUint32(nil, cw.crc.Sum32()))
	if cw.err != nil {
		return cw.n, cw.err
	}
	return cw.n, cw.w.(*bufio.Writer).Flush()
}

// ReadSnapshotIndex reads the applied index from a snapshot stream's
// header (and consumes the header).
func ReadSnapshotIndex(r io.Reader) (uint64, error) {
	var hdr [len(snapshotMagic) + 4 + 8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, fmt.Errorf("%w: header: %w", ErrBadSnapshot, err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return 0, fmt.Errorf("%w: not a cairn snapshot", ErrBadSnapshot)
	}
	if v := binary.BigEndian.Uint32(hdr[len(snapshotMagic):]); v != SnapshotVersion {
		return 0, fmt.Errorf("%w: format version %d, this build reads %d", ErrBadSnapshot, v, SnapshotVersion)
	}
	return binary.BigEndian.Uint64(hdr[len(snapshotMagic)+4:]), nil
}

// Release ends the snapshot's read transaction, and closes its database
// when Restore replaced it and this was its last open snapshot.
func (s *Snapshot) Release() {
	_ = s.tx.Rollback()
	f := s.f
	f.snaps.Lock()
	f.open[s.db]--
	last := f.open[s.db] == 0
	if last {
		delete(f.open, s.db)
	}
	closeDB := last && f.retired[s.db]
	if closeDB {
		delete(f.retired, s.db)
	}
	f.snaps.Unlock()
	if closeDB {
		_ = s.db.Close()
	}
}

// retire closes db, which Restore has replaced, or, while snapshots of it
// are open (Raft may be writing one out, a backup streaming one), leaves
// that to the last one's Release. Waiting here instead would deadlock:
// Raft's snapshot goroutine holds its snapshot while it waits for Raft's
// main goroutine, which waits for this restore.
func (f *FSM) retire(db *bolt.DB) error {
	f.snaps.Lock()
	if f.open[db] > 0 {
		if f.retired == nil {
			f.retired = map[*bolt.DB]bool{}
		}
		f.retired[db] = true
		f.snaps.Unlock()
		return nil
	}
	f.snaps.Unlock()
	return db.Close()
}

// forEachRecord walks every bucket (meta included only if withMeta) and
// every key in byte order.
func forEachRecord(tx *bolt.Tx, withMeta bool, bucket func(name []byte), record func(k, v []byte)) error {
	return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		if !withMeta && bytes.Equal(name, bucketMeta) {
			return nil
		}
		bucket(name)
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return fmt.Errorf("fsm: nested bucket %q in %q", k, name)
			}
			record(k, v)
			return nil
		})
	})
}

type countingWriter struct {
	w   io.Writer
	crc hash.Hash32
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(p)
	c.crc.Write(p[:n])
	c.n += int64(n)
	c.err = err
}

// Restore replaces the whole state with the snapshot read from r. It
// builds a new database file beside the current one, checks the stream's
// checksum, header and stored format, and only then swaps the files: the
// new database is opened and put in place under the lock that queries
// take, so no query ever sees a half-restored state. On error the current
// state is left as it was. Restore must be called from the goroutine that
// applies (no apply may run concurrently).
func (f *FSM) Restore(r io.Reader) error {
	tmp := f.path + ".restore"
	_ = os.Remove(tmp)
	if _, err := f.buildFromSnapshot(tmp, r); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	// Renaming over the open database is safe: the old file lives on
	// until it is closed, and nothing writes to it meanwhile.
	if err := os.Rename(tmp, f.path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("fsm: restore: %w", err)
	}
	if err := fsync.Dir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	db, err := f.openDB(f.path)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.dropPending()
	old := f.db
	f.db = db
	f.mu.Unlock()
	// Queries already use the new database; the old one closes once its
	// open snapshots are released (see retire).
	if f.opts.Observer != nil {
		f.opts.Observer.Restored(f.applied.Load())
	}
	if old != nil {
		if err := f.retire(old); err != nil {
			return fmt.Errorf("fsm: restore: close the replaced database: %w", err)
		}
	}
	return nil
}

// CoverIndex records that the state stands for every log entry up to
// index: a snapshot's index may lie past the last entry that reached the
// FSM (no-ops, barriers, and the index Raft gives a user restore). When
// it moves the applied index, the Observer is told Restored(index), so
// watch history restarts at the state's final index and a watcher cannot
// resume from a revision in between. Like Restore, it must be called from
// the goroutine that applies.
func (f *FSM) CoverIndex(index uint64) error {
	if index <= f.applied.Load() {
		return nil
	}
	// No command: only the applied index moves.
	if _, err := f.ApplyBatch([]Entry{{Index: index}}); err != nil {
		return err
	}
	if f.opts.Observer != nil {
		f.opts.Observer.Restored(index)
	}
	return nil
}

// buildFromSnapshot writes the snapshot in r into a new database at path
// and returns the applied index of its header.
func (f *FSM) buildFromSnapshot(path string, r io.Reader) (uint64, error) {
	br := &crcReader{r: bufio.NewReaderSize(r, 256<<10), crc: crc32.New(crcTable)}
	index, err := ReadSnapshotIndex(br)
	if err != nil {
		return 0, err
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return 0, fmt.Errorf("fsm: restore: %w", err)
	}
	defer db.Close()
	const perTx = 20000
	var tx *bolt.Tx
	var b *bolt.Bucket
	var bucket []byte
	n := 0
	fail := func(err error) (uint64, error) {
		if tx != nil {
			_ = tx.Rollback()
		}
		return 0, err
	}
	for {
		if tx == nil {
			if tx, err = db.Begin(true); err != nil {
				return fail(err)
			}
			if bucket != nil {
				if b, err = tx.CreateBucketIfNotExists(bucket); err != nil {
					return fail(fmt.Errorf("%w: bucket %q: %w", ErrBadSnapshot, bucket, err))
				}
				b.FillPercent = 0.9
			}
		}
		tag, err := br.ReadByte()
		if err != nil {
			return fail(fmt.Errorf("%w: truncated: %w", ErrBadSnapshot, err))
		}
		switch tag {
		case 'B':
			if bucket, err = readField(br); err != nil {
				return fail(fmt.Errorf("%w: bucket: %w", ErrBadSnapshot, err))
			}
			if b, err = tx.CreateBucketIfNotExists(bucket); err != nil {
				return fail(fmt.Errorf("%w: bucket %q: %w", ErrBadSnapshot, bucket, err))
			}
			b.FillPercent = 0.9
		case 'R':
			k, err := readField(br)
			if err != nil {
				return fail(fmt.Errorf("%w: key: %w", ErrBadSnapshot, err))
			}
			v, err := readField(br)
			if err != nil {
				return fail(fmt.Errorf("%w: value: %w", ErrBadSnapshot, err))
			}
			if b == nil {
				return fail(fmt.Errorf("%w: record before any bucket", ErrBadSnapshot))
			}
			if err := b.Put(k, v); err != nil {
				return fail(fmt.Errorf("%w: %w", ErrBadSnapshot, err))
			}
			if n++; n%perTx == 0 {
				if err := tx.Commit(); err != nil {
					return 0, err
				}
				tx = nil
			}
		case 'E':
			want := br.crc.Sum32()
			var sum [4]byte
			if _, err := io.ReadFull(br.r, sum[:]); err != nil {
				return fail(fmt.Errorf("%w: trailer: %w", ErrBadSnapshot, err))
			}
			if got := binary.BigEndian.Uint32(sum[:]); got != want {
				return fail(fmt.Errorf("%w: checksum %08x, computed %08x", ErrBadSnapshot, got, want))
			}
			if err := checkRestored(tx, index); err != nil {
				return fail(err)
			}
			if err := tx.Commit(); err != nil {
				return 0, fmt.Errorf("fsm: restore: %w", err)
			}
			if err := db.Sync(); err != nil {
				return 0, fmt.Errorf("fsm: restore: %w", err)
			}
			return index, nil
		default:
			return fail(fmt.Errorf("%w: unknown record tag %q", ErrBadSnapshot, tag))
		}
	}
}

// checkRestored checks, before anything is swapped in, that a restored
// database records the header's index and a storage format this build
// reads.
func checkRestored(tx *bolt.Tx, index uint64) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return fmt.Errorf("%w: no meta bucket", ErrBadSnapshot)
	}
	if got := readU64(meta.Get(metaApplied)); got != index {
		return fmt.Errorf("%w: state records index %d, header says %d", ErrBadSnapshot, got, index)
	}
	if v := meta.Get(metaFormat); len(v) != 4 || binary.BigEndian.Uint32(v) != storageFormat {
		return fmt.Errorf("%w: storage format %x, this build reads %d", ErrBadSnapshot, v, storageFormat)
	}
	return nil
}

// readField reads one length-prefixed field of a snapshot record.
func readField(r *crcReader) ([]byte, error) {
	l, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if l > 1<<31 {
		return nil, fmt.Errorf("record of %d bytes", l)
	}
	if l <= 64<<10 {
		p := make([]byte, l)
		_, err = io.ReadFull(r, p)
		return p, err
	}
	// A large length is believed only as far as the stream bears it out:
	// memory grows with the bytes actually read.
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r, int64(l)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// crcReader hashes the bytes its callers consume.
type crcReader struct {
	r interface {
		io.Reader
		io.ByteReader
	}
	crc hash.Hash32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	return n, err
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.crc.Write([]byte{b})
	}
	return b, err
}

// Hash returns a SHA-256 over every replicated bucket, key and value, in
// order. Two replicas that applied the same log have the same hash.
func (f *FSM) Hash() ([]byte, error) {
	h, _, err := f.HashAt()
	return h, err
}

// HashAt returns Hash and the applied index it covers, read in one
// transaction.
func (f *FSM) HashAt() ([]byte, uint64, error) {
	h := sha256.New()
	var index uint64
	err := f.view(func(tx *bolt.Tx) error {
		index = readU64(tx.Bucket(bucketMeta).Get(metaApplied))
		return forEachRecord(tx, false, func(name []byte) {
			h.Write(binary.AppendUvarint([]byte{'B'}, uint64(len(name))))
			h.Write(name)
		}, func(k, v []byte) {
			h.Write(binary.AppendUvarint([]byte{'R'}, uint64(len(k))))
			h.Write(k)
			h.Write(binary.AppendUvarint(nil, uint64(len(v))))
			h.Write(v)
		})
	})
	if err != nil {
		return nil, 0, err
	}
	return h.Sum(nil), index, nil
}
