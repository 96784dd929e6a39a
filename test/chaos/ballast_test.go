package chaos

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// ballast keeps about 1 MiB of larger values in an object of its own,
// rewritten ten times a second, so that snapshots take time to write and
// to install, and faults land in the middle of them. Its writes are not
// checked one by one; the replicas' state hashes cover them.
func ballast(ctx context.Context, c *cluster) {
	live := &liveClient{c: c, retryFor: 5 * time.Second}
	defer live.close()
	value := bytes.Repeat([]byte("ballast "), 4<<10) // 32 KiB
	for i := 0; ctx.Err() == nil; i++ {
		wctx, cancel := context.WithTimeout(ctx, 4*time.Second)
		_, _ = live.get().Put(wctx, kvNamespace, "ballast", fmt.Sprintf("b%02d", i%32), value)
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
