package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/testcluster"
)

// TestCameraPoller: each camera is polled on its schedule the number of
// times asked, and a duplicate delivery stores nothing twice.
func TestCameraPoller(t *testing.T) {
	cl, err := testcluster.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	c, err := client.New(client.Config{Endpoints: cl.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out strings.Builder
	start := time.Now()
	if err := run(ctx, c, &out, []string{"cam-a", "cam-b"}, 300*time.Millisecond, 3, true); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"cam-a: 3 frames", "cam-b: 3 frames", "duplicate deliveries answered from memory: 6"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
	if took := time.Since(start); took < 600*time.Millisecond {
		t.Fatalf("3 polls 300 ms apart took %s: the schedule was not kept", took)
	}
}
