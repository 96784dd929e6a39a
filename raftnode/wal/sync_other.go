//go:build !linux && !windows

package wal

import (
	"errors"
	"os"
)

// syncData makes f's data durable (fsync: no fdatasync here).
func syncData(f *os.File) error { return f.Sync() }

// syncDir makes the creations, renames and removals of entries of dir
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// preallocate is not supported here: appends grow the file.
func preallocate(*os.File, int64) error { return errors.ErrUnsupported }
