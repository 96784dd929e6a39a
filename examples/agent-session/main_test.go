package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/testcluster"
)

func TestAgentSession(t *testing.T) {
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, c, &out, "s-1", 500*time.Millisecond); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{
		`watch: msgs/00000001 {"role":"user","text":"Hello!"}`,
		`watch: msgs/00000003`,
		"history: user: Hello! | agent: Hi! How can I help? | user: Remind me about the demo.",
		"idle alarm fired: cleared s-1",
	} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := c.Object(ctx, ns, "s-1"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("the idle session still exists: %v", err)
	}
}
