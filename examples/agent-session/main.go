// Command agent-session keeps an AI agent's session in one cairn object:
// the chat history under ordered keys, the user's preferences, a watch
// that streams new messages as they are stored, and an expiry alarm that
// clears the session once it has been idle.
//
// Run it against `cairn dev`:
//
//	export CAIRN_TOKEN=<the admin token cairn dev printed>
//	go run ./examples/agent-session --idle 3s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/client"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403", "gRPC addresses of cairn nodes")
	idle := flag.Duration("idle", 5*time.Second, "clear the session after this long without a message")
	flag.Parse()
	c, err := client.New(client.Config{Endpoints: strings.Split(*endpoints, ","), Token: os.Getenv("CAIRN_TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute+*idle)
	defer cancel()
	if err := run(ctx, c, os.Stdout, "session-42", *idle); err != nil {
		log.Fatal(err)
	}
}

// message is one turn of the conversation.
type message struct {
	Role string `json:"role"`
	Text string `json:"text"`
}

const ns = "agent-sessions"

// run plays a short conversation in session, then waits for its idle
// alarm and clears it.
func run(ctx context.Context, c *client.Client, out io.Writer, session string, idle time.Duration) error {
	if _, err := c.PutNamespace(ctx, ns, nil); err != nil { // no webhook: workers pull alarms
		return err
	}
	if _, err := c.Put(ctx, ns, session, "prefs", map[string]string{"tone": "friendly", "language": "en"}); err != nil {
		return err
	}

	// Stream the messages as they are stored.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	w, err := c.Watch(watchCtx, &cairnv1.WatchRequest{Namespace: ns, Object: session, Prefix: "msgs/"})
	if err != nil {
		return err
	}
	seen := make(chan struct{}, 16)
	go func() {
		for {
			resp, err := w.Next(false)
			if err != nil {
				return
			}
			for _, ev := range resp.Events {
				if ev.Type == cairnv1.EventType_EVENT_TYPE_PUT {
					b, _ := json.Marshal(ev.GetValue().AsInterface())
					fmt.Fprintf(out, "watch: %s %s\n", ev.Key, b)
					seen <- struct{}{}
				}
			}
		}
	}()

	turns := []message{{"user", "Hello!"}, {"agent", "Hi! How can I help?"}, {"user", "Remind me about the demo."}}
	for _, m := range turns {
		if err := appendMessage(ctx, c, session, m, idle); err != nil {
			return err
		}
	}
	for range turns {
		select {
		case <-seen:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var history []string
	for kv, err := range c.Keys(ctx, ns, session, client.ListOptions{Prefix: "msgs/"}) {
		if err != nil {
			return err
		}
		var m message
		if err := kv.Decode(&m); err != nil {
			return err
		}
		history = append(history, m.Role+": "+m.Text)
	}
	fmt.Fprintf(out, "history: %s\n", strings.Join(history, " | "))

	// A worker: wait for the idle alarm, then clear the session (its keys
	// and its alarms go in one commit).
	for {
		claimed, err := c.ClaimAlarms(ctx, ns, "session-janitor", 10, time.Minute)
		if err != nil {
			return err
		}
		for _, a := range claimed {
			n, err := c.DeleteObject(ctx, ns, a.Object)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "idle alarm fired: cleared %s (%d keys)\n", a.Object, n)
			if a.Object == session {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// appendMessage stores m under the next ordered key, atomically with the
// session's counter (compare-and-set), and pushes the idle alarm back.
func appendMessage(ctx context.Context, c *client.Client, session string, m message, idle time.Duration) error {
	doc, err := json.Marshal(m)
	if err != nil {
		return err
	}
	for {
		next, rev := 1, uint64(0)
		kv, err := c.Get(ctx, ns, session, "seq")
		switch {
		case err == nil:
			if err := kv.Decode(&next); err != nil {
				return err
			}
			next, rev = next+1, kv.ModRevision
		case !errors.Is(err, client.ErrNotFound):
			return err
		}
		seq, _ := json.Marshal(next)
		resp, err := c.Txn(ctx, &cairnv1.TxnRequest{
			Namespace: ns,
			Compares:  []*cairnv1.Compare{{Object: session, Key: "seq", Target: &cairnv1.Compare_ModRevision{ModRevision: rev}}},
			Success: []*cairnv1.TxnOp{
				putOp(session, "seq", seq),
				putOp(session, fmt.Sprintf("msgs/%08d", next), doc),
			},
		})
		if err != nil {
			return err
		}
		if resp.Succeeded {
			break // else another writer got there first: read and try again
		}
	}
	_, err = c.SetAlarm(ctx, ns, session, client.AlarmSpec{Name: "idle", FireIn: idle})
	return err
}

func putOp(object, key string, doc []byte) *cairnv1.TxnOp {
	var v any
	_ = json.Unmarshal(doc, &v)
	pv, _ := structValue(v)
	return &cairnv1.TxnOp{Op: &cairnv1.TxnOp_Put{Put: &cairnv1.PutOp{Object: object, Key: key, Content: &cairnv1.PutOp_Value{Value: pv}}}}
}
