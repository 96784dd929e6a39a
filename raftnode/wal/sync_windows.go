package wal

import (
	"errors"
	"os"
)

// syncData makes f's data durable (FlushFileBuffers).
func syncData(f *os.File) error { return f.Sync() }

// syncDir does nothing: Windows cannot flush a directory handle, and NTFS
// journals its directory changes itself.
func syncDir(string) error { return nil }

// preallocate is not supported here: appends grow the file.
func preallocate(*os.File, int64) error { return errors.ErrUnsupported }
