//go:build !windows

package fsync

import "os"

// Dir makes the creations, renames and removals of entries of dir
// durable.
func Dir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
