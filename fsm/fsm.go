// Package fsm is cairn's deterministic state machine: the commands of the
// replicated log applied to an on-disk bbolt database, and the queries over
// that applied state.
//
// Everything in this package must be deterministic: no clocks, no
// randomness, no goroutines, no map iteration leaking into results or
// storage. Time comes from the log (see Command.time_unix_ms). DESIGN.md in
// this folder holds the on-disk format and the rules a change must keep.
package fsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Options configure an FSM. The zero value of every field means its
// default.
type Options struct {
	// Dir is the directory that holds the state database. Required.
	Dir string
	// InitialMmapSize is bbolt's initial memory map size. A large map keeps
	// writers from waiting on a long snapshot read. 0 means 256 MiB.
	InitialMmapSize int
	// Observer, when set, is told of every committed batch and its changes
	// and of every restore (for watch streams). nil means no one is told.
	Observer Observer
	// NoSync skips even the fsync on Close (commits never fsync; see
	// durability.go), so every close counts as a crash; for tests only.
	NoSync bool
}

// Validate reports whether the options can be used.
func (o Options) Validate() error {
	if o.Dir == "" {
		return errors.New("fsm: Options.Dir is required")
	}
	if o.InitialMmapSize < 0 {
		return errors.New("fsm: Options.InitialMmapSize must not be negative")
	}
	return nil
}

const dbFile = "state.db"

// FSM is the state machine. ApplyBatch, Snapshot and Restore must be called
// from one goroutine at a time (Raft's FSM goroutine); the query methods
// may be called concurrently with them and with each other.
type FSM struct {
	opts Options
	path string

	// mu guards db: queries and applies hold it for reading, Restore holds
	// it for writing while it swaps the database file.
	mu sync.RWMutex
	db *bolt.DB

	// snaps guards open: the snapshots not yet released, per database. A
	// database that Restore replaced while snapshots of it were open is
	// closed by the last one's Release, not by Restore, which must not
	// wait for them (see Restore).
	snaps sync.Mutex
	open  map[*bolt.DB]int
	// retired holds the replaced databases that are waiting for their
	// snapshots to be released.
	retired map[*bolt.DB]bool

	// wmu guards the open write transaction that applied batches stay in
	// until a commit (apply.go), and the batches it holds.
	wmu            sync.Mutex
	wtx            *bolt.Tx
	pending        []pendingBatch
	pendingEntries int
	pendingBytes   int
	dirty          atomic.Bool // batches are applied and not committed
	commitErr      error       // why the last commit failed; nil after one succeeds
	expiry         expiryHint  // where the request expiry index starts in wtx (requests.go)
	reapplied      uint64      // entries applied again into a new transaction since Open
	// redoRefused, when set (by tests), rolls the write transaction back
	// for every command refused after it wrote, instead of taking the
	// command's writes back in place.
	redoRefused bool
	// failCommit, when set (by tests), fails commits that it returns an
	// error for, as a full disk would.
	failCommit func() error

	applied atomic.Uint64 // last applied index
	applies atomic.Uint64 // commands applied since Open (skipped ones not counted)

	rebuilt string // why Open set the database aside (torn by a reboot, damaged); "" when it did not
}

// Open opens (or creates) the state database in opts.Dir.
func Open(opts Options) (*FSM, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.InitialMmapSize == 0 {
		opts.InitialMmapSize = 256 << 20
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("fsm: %w", err)
	}
	f := &FSM{opts: opts, path: filepath.Join(opts.Dir, dbFile)}
	torn, err := mayBeTorn(opts.Dir)
	if err != nil {
		return nil, err
	}
	if torn {
		aside, err := setAsideTorn(f.path)
		if err != nil {
			return nil, err
		}
		if aside {
			f.rebuilt = "the state database was not closed cleanly before a reboot and may be torn: set aside as state.db.torn"
		}
	} else if err := f.setAsideDamaged(); err != nil {
		return nil, err
	}
	db, err := f.openDB(f.path)
	if err != nil {
		return nil, err
	}
	// From here on commits reach the disk unsynced: until Close marks the
	// database clean, only this boot may trust it.
	if err := writeMarker(opts.Dir, marker{boot: bootID()}); err != nil {
		_ = db.Close()
		return nil, err
	}
	f.db = db
	return f, nil
}

// Rebuilt reports whether Open found a database that a reboot may have
// torn (it was committed without fsync and not closed cleanly) and set it
// aside as state.db.torn, or a damaged one (CheckDatabase) that it set
// aside as state.db.damaged: the FSM then starts empty and must be
// restored from the newest snapshot, with Raft replaying the log after it.
func (f *FSM) Rebuilt() bool { return f.rebuilt != "" }

// RebuildReason says why Open set the database aside, naming the file
// and the damage; "" when it did not.
func (f *FSM) RebuildReason() string { return f.rebuilt }

func (f *FSM) openDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         time.Second, // the file is locked while open: another process holds it
		InitialMmapSize: f.opts.InitialMmapSize,
		NoSync:          true, // durability.go: the Raft log makes entries durable
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is locked: another cairn process is using this data directory", ErrInUse, path)
	}
	if err != nil {
		return nil, fmt.Errorf("fsm: open %s: %w", path, err)
	}
	if err := checkStorageFormat(db, path); err != nil {
		_ = db.Close()
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketNamespaces, bucketMembers, bucketObjects, bucketRequests, bucketRequestExpiry, bucketAlarms, bucketAlarmDue} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		for _, name := range shardBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(metaFormat); v == nil {
			return meta.Put(metaFormat, []byte{0, 0, 0, storageFormat})
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("fsm: init %s: %w", path, err)
	}
	var applied uint64
	_ = db.View(func(tx *bolt.Tx) error {
		applied = readU64(tx.Bucket(bucketMeta).Get(metaApplied))
		return nil
	})
	f.applied.Store(applied)
	releaseMapping(db, path)
	return db, nil
}

// Close syncs and closes the database and marks it clean, so that it is
// trusted after a reboot. Queries after Close return ErrClosed.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	err := f.flush()
	if f.wtx != nil {
		_ = f.wtx.Rollback()
		f.wtx = nil
	}
	if err == nil && !f.opts.NoSync {
		err = f.db.Sync()
	}
	if cerr := f.db.Close(); err == nil {
		err = cerr
	}
	f.db = nil
	if err == nil && !f.opts.NoSync {
		err = writeMarker(f.opts.Dir, marker{boot: bootID(), clean: true})
	}
	return err
}

// AppliedIndex returns the index of the last applied log entry. Queries
// see its state; the database file may hold an earlier one until the
// batches since are committed (see ApplyBatch).
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Applies returns how many commands this FSM has applied since it was
// opened. Entries skipped because they were already applied do not count.
func (f *FSM) Applies() uint64 { return f.applies.Load() }

// ReleaseMapping hands the resident pages of the database's memory map
// back to the kernel (they stay in the page cache and fault back in
// without I/O when used). Reads map pages in and nothing maps them out,
// so without it a node's RSS grows toward the size of its database under
// writes spread over many keys; the server calls it when the mapped pages
// pass its budget. It changes no state. It is a no-op where the map
// cannot be advised (not Linux).
func (f *FSM) ReleaseMapping() error {
	return f.view(func(tx *bolt.Tx) error {
		releaseMappingIn(tx)
		return nil
	})
}

// viewApplied runs fn over the applied state as view does, except that
// batches applied and not yet committed are read from the open write
// transaction (under wmu, between batches: applies wait for fn) rather
// than committed first. For small reads that come at a steady pace
// whatever the load (PollNamespaces). fn must not keep the slices bbolt
// hands it.
func (f *FSM) viewApplied(fn func(tx *bolt.Tx) error) error { return f.read(fn, false) }

// view runs fn in a read transaction of the current database.
func (f *FSM) view(fn func(tx *bolt.Tx) error) error { return f.read(fn, true) }

// read runs fn over the applied state. Batches that wait in the write
// transaction are committed first when commit is set, so that fn runs in
// a read transaction; otherwise, or when the disk refuses commits (full,
// failing), fn reads them from the write transaction, which holds every
// applied batch, rather than fail or see a state older than the applied
// one. Queries do not try a failed commit again (each try applies the
// waiting batches again): the next batch, snapshot or Close does.
func (f *FSM) read(fn func(tx *bolt.Tx) error, commit bool) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return ErrClosed
	}
	if f.dirty.Load() {
		f.wmu.Lock()
		if f.dirty.Load() && (!commit || f.commitErr != nil || f.commitLocked() != nil) {
			defer f.wmu.Unlock()
			if err := f.beginLocked(); err != nil {
				return fmt.Errorf("%w: commit to %s: %w", ErrStorage, f.path, err)
			}
			return fn(f.wtx)
		}
		f.wmu.Unlock()
	}
	return f.db.View(fn)
}
