package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cairndb/cairn/client"
)

// TestBackupRestore: a backup taken while 8 clients write restores into
// the running cluster; a corrupted or truncated file is refused with
// ErrInvalidArgument and changes nothing.
func TestBackupRestore(t *testing.T) {
	cl := mustCluster(t)
	c := mustClient(t, cl.Endpoints())
	ctx := context.Background()
	if _, err := c.PutNamespace(ctx, "b", nil); err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Put(ctx, "b", fmt.Sprintf("w%d", w), fmt.Sprintf("k%05d", i), i); err == nil {
					written.Add(1)
				}
			}
		}()
	}
	for written.Load() < 100 {
		if _, err := c.Get(ctx, "b", "w0", "k00000"); err != nil && !errors.Is(err, client.ErrNotFound) {
			t.Fatal(err)
		}
	}
	var backup bytes.Buffer
	n, err := c.Backup(ctx, &backup)
	close(stop)
	wg.Wait()
	if err != nil || n != int64(backup.Len()) || n == 0 {
		t.Fatalf("Backup: %d bytes (%d written), %v", n, backup.Len(), err)
	}
	after, err := c.Put(ctx, "b", "after", "k", "written after the backup")
	if err != nil {
		t.Fatal(err)
	}

	data := backup.Bytes()
	bad := bytes.Clone(data)
	bad[len(bad)/3] ^= 0x04
	for _, file := range [][]byte{bad, data[:len(data)-1], data[:len(data)/2]} {
		if _, err := c.Restore(ctx, bytes.NewReader(file)); !errors.Is(err, client.ErrInvalidArgument) {
			t.Fatalf("Restore of a damaged file: %v, want ErrInvalidArgument", err)
		}
	}
	if _, err := c.Get(ctx, "b", "after", "k"); err != nil {
		t.Fatalf("a refused restore changed the state: %v", err)
	}

	resp, err := c.Restore(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if resp.RestoredRevision <= after.Revision || resp.Bytes != int64(len(data)) {
		t.Fatalf("Restore: %v; the last write before it was at %d", resp, after.Revision)
	}
	if _, err := c.Get(ctx, "b", "after", "k"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("a write after the backup survived its restore: %v", err)
	}
	if _, err := c.Get(ctx, "b", "w0", "k00000"); err != nil {
		t.Fatalf("a write before the backup is missing after its restore: %v", err)
	}
	put, err := c.Put(ctx, "b", "after", "k", "again")
	if err != nil || put.Revision <= resp.RestoredRevision {
		t.Fatalf("Put after the restore: %v at revision %d, restore at %d", err, put.Revision, resp.RestoredRevision)
	}
}
