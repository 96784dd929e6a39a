package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/testcluster"
)

// exampleEndpoints starts a cluster for the examples (a real deployment
// would list its nodes' gRPC addresses instead) and returns its endpoints
// and a function that stops it.
func exampleEndpoints() ([]string, func()) {
	c, err := testcluster.Start()
	if err != nil {
		log.Fatal(err)
	}
	return c.Endpoints(), c.Stop
}

func Example() {
	endpoints, stop := exampleEndpoints()
	defer stop()
	ctx := context.Background()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if _, err := c.PutNamespace(ctx, "chat", nil); err != nil {
		log.Fatal(err)
	}
	// Values are stored as JSON ([]byte values as binary).
	if _, err := c.Put(ctx, "chat", "room-1", "msgs/0001", map[string]string{"from": "ada", "text": "hello"}); err != nil {
		log.Fatal(err)
	}
	kv, err := c.Get(ctx, "chat", "room-1", "msgs/0001")
	if err != nil {
		log.Fatal(err)
	}
	var msg struct{ From, Text string }
	if err := kv.Decode(&msg); err != nil {
		log.Fatal(err)
	}
	fmt.Println(msg.From, "says", msg.Text)

	_, err = c.Get(ctx, "chat", "room-1", "msgs/9999")
	fmt.Println("missing key is ErrNotFound:", errors.Is(err, client.ErrNotFound))
	// Output:
	// ada says hello
	// missing key is ErrNotFound: true
}

// Compare-and-set: a put conditional on the key's mod_revision, retried
// on conflict.
func ExampleIfModRevision() {
	endpoints, stop := exampleEndpoints()
	defer stop()
	ctx := context.Background()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.PutNamespace(ctx, "counters", nil); err != nil {
		log.Fatal(err)
	}
	increment := func() error {
		for {
			n, rev := 0, uint64(0) // a missing key counts as 0 at revision 0
			kv, err := c.Get(ctx, "counters", "page-views", "n")
			switch {
			case err == nil:
				if err := kv.Decode(&n); err != nil {
					return err
				}
				rev = kv.ModRevision
			case !errors.Is(err, client.ErrNotFound):
				return err
			}
			_, err = c.Put(ctx, "counters", "page-views", "n", n+1, client.IfModRevision(rev))
			if !errors.Is(err, client.ErrCompareFailed) {
				return err // done, or a real error
			}
		}
	}
	for i := 0; i < 3; i++ {
		if err := increment(); err != nil {
			log.Fatal(err)
		}
	}
	kv, _ := c.Get(ctx, "counters", "page-views", "n")
	fmt.Println(string(kv.Value))
	// Output: 3
}

// A retried write with the same request id is applied once; the client
// gives every write an id of its own by default.
func ExampleWithRequestID() {
	endpoints, stop := exampleEndpoints()
	defer stop()
	ctx := context.Background()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.PutNamespace(ctx, "ingest", nil); err != nil {
		log.Fatal(err)
	}
	first, _ := c.Put(ctx, "ingest", "camera-7", "frames/42", json.RawMessage(`{"bytes": 1024}`), client.WithRequestID("camera-7/42"))
	again, _ := c.Put(ctx, "ingest", "camera-7", "frames/42", json.RawMessage(`{"bytes": 1024}`), client.WithRequestID("camera-7/42"))
	fmt.Println("replayed:", again.Replayed, "same revision:", again.Revision == first.Revision)
	_, err = c.Put(ctx, "ingest", "camera-7", "frames/42", json.RawMessage(`{"bytes": 0}`), client.WithRequestID("camera-7/42"))
	fmt.Println("id reused for another request:", errors.Is(err, client.ErrRequestIDReused))
	// Output:
	// replayed: true same revision: true
	// id reused for another request: true
}

// Watch an object; the watcher resumes on another node by itself.
func ExampleClient_Watch() {
	endpoints, stop := exampleEndpoints()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.PutNamespace(ctx, "chat", nil); err != nil {
		log.Fatal(err)
	}
	w, err := c.Watch(ctx, &cairnv1.WatchRequest{Namespace: "chat", Object: "room-1"})
	if err != nil {
		log.Fatal(err)
	}
	for _, text := range []string{"hi", "there"} {
		if _, err := c.Put(ctx, "chat", "room-1", "msgs/"+text, text); err != nil {
			log.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		resp, err := w.Next(false)
		if err != nil {
			log.Fatal(err)
		}
		for _, ev := range resp.Events {
			fmt.Println(ev.Type, ev.Key, ev.GetValue().GetStringValue())
		}
	}
	// Output:
	// EVENT_TYPE_PUT msgs/hi hi
	// EVENT_TYPE_PUT msgs/there there
}

// Walk an object's keys page by page.
func ExampleClient_Keys() {
	endpoints, stop := exampleEndpoints()
	defer stop()
	ctx := context.Background()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.PutNamespace(ctx, "chat", nil); err != nil {
		log.Fatal(err)
	}
	var puts []client.Put
	for i := 1; i <= 5; i++ {
		puts = append(puts, client.Put{Key: fmt.Sprintf("msgs/%04d", i), Value: i})
	}
	if _, err := c.BatchWrite(ctx, "chat", "room-1", puts, nil); err != nil {
		log.Fatal(err)
	}
	for kv, err := range c.Keys(ctx, "chat", "room-1", client.ListOptions{Prefix: "msgs/", Reverse: true, PageSize: 2}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Print(kv.Key, "=", string(kv.Value), " ")
	}
	fmt.Println()
	// Output: msgs/0005=5 msgs/0004=4 msgs/0003=3 msgs/0002=2 msgs/0001=1
}
