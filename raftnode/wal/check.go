package wal

import (
	"errors"
	"os"
	"path/filepath"
)

// CheckResult is what Check found.
type CheckResult struct {
	Segments    int
	First, Last uint64 // entries the log holds (0, 0: none)
	Bytes       int64  // of every segment, as Open would leave them
	// Notes are the repairs Open would make (a torn last write cut off,
	// leftovers of an interrupted deletion removed): what a crash leaves,
	// not damage.
	Notes []string
}

// Check reads and checks the whole log in dir, every record's checksum
// included, and the stable file, changing nothing. It returns a
// *DamageError when Open would refuse the log. A directory that does not
// exist holds an empty log.
func Check(dir string) (CheckResult, error) {
	var r CheckResult
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	ld, err := load(dir, false)
	if err != nil {
		return r, err
	}
	defer func() {
		for _, g := range append(ld.segs, ld.stale...) {
			_ = g.f.Close()
		}
	}()
	r.Notes = ld.notes
	for _, g := range ld.segs {
		r.Segments++
		r.Bytes += g.size
		if len(g.offs) > 0 {
			if r.First == 0 {
				r.First = g.first
			}
			r.Last = g.last()
		}
	}
	_, err = readStable(filepath.Join(dir, stableName))
	return r, err
}
