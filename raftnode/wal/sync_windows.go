package wal

import (
	"errors"
	"os"
)

// syncData makes f's data durable (FlushFileBuffers).
func syncData(f *os.File) error { return f.Sync() }

// preallocate is not supported here: appends grow the file.
func preallocate(*os.File, int64) error { return errors.ErrUnsupported }
