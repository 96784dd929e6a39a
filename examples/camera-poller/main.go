// Command camera-poller polls cameras on a schedule kept by cairn: one
// object per camera and a repeating alarm on each, so no cron and no
// client loop decides when to poll. Workers claim due alarms, ingest a
// frame under a request id derived from the scheduled time, and ack: a
// delivery that arrives twice (a worker crashed after ingesting, a lease
// expired) stores nothing twice.
//
// Run it against `cairn dev`:
//
//	export CAIRN_TOKEN=<the admin token cairn dev printed>
//	go run ./examples/camera-poller --every 2s --polls 3
package main

import (
	"context"
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
	every := flag.Duration("every", 2*time.Second, "how often each camera is polled")
	polls := flag.Int("polls", 3, "stop after this many polls of each camera")
	flag.Parse()
	c, err := client.New(client.Config{Endpoints: strings.Split(*endpoints, ","), Token: os.Getenv("CAIRN_TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*polls+10)**every+time.Minute)
	defer cancel()
	if err := run(ctx, c, os.Stdout, []string{"cam-1", "cam-2", "cam-3"}, *every, *polls, false); err != nil {
		log.Fatal(err)
	}
}

const ns = "cameras"

// run arms a repeating poll alarm per camera and works the alarms until
// every camera has been polled polls times. With duplicate set, every
// delivery is ingested twice, as a retried delivery would be.
func run(ctx context.Context, c *client.Client, out io.Writer, cameras []string, every time.Duration, polls int, duplicate bool) error {
	if _, err := c.PutNamespace(ctx, ns, nil); err != nil { // pull delivery
		return err
	}
	for _, cam := range cameras {
		if _, err := c.SetAlarm(ctx, ns, cam, client.AlarmSpec{Name: "poll", FireIn: 0, RepeatEvery: every}); err != nil {
			return err
		}
	}
	done := map[string]int{}
	replayed := 0
	for finished := 0; finished < len(cameras); {
		claimed, err := c.ClaimAlarms(ctx, ns, "poller-1", 10, 30*time.Second)
		if err != nil {
			return err
		}
		var acks []*cairnv1.AlarmAck
		for _, a := range claimed {
			if done[a.Object] >= polls {
				continue // this camera is done; leave its alarm to expire
			}
			// The frame is keyed, and its write identified, by the time the
			// poll was scheduled for: the same delivery twice is one frame.
			scheduled := a.FireAt.AsTime().UTC().Format(time.RFC3339Nano)
			frame := map[string]any{"camera": a.Object, "scheduled": scheduled, "bytes": 1024}
			id := a.Object + "/" + scheduled
			for i := 0; i < 1+btoi(duplicate); i++ {
				res, err := c.Put(ctx, ns, a.Object, "frames/"+scheduled, frame, client.WithRequestID(id))
				if err != nil {
					return err
				}
				if res.Replayed {
					replayed++
				}
			}
			if done[a.Object]++; done[a.Object] == polls {
				finished++
			}
			acks = append(acks, &cairnv1.AlarmAck{Object: a.Object, Name: a.Name, LeaseId: a.LeaseId, Result: &cairnv1.AlarmAck_Done{Done: true}})
		}
		if len(acks) > 0 {
			if _, err := c.AckAlarms(ctx, ns, acks); err != nil { // a repeating alarm re-arms in the same commit
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every / 10):
		}
	}
	for _, cam := range cameras {
		n := 0
		for _, err := range c.Keys(ctx, ns, cam, client.ListOptions{Prefix: "frames/", KeysOnly: true}) {
			if err != nil {
				return err
			}
			n++
		}
		fmt.Fprintf(out, "%s: %d frames\n", cam, n)
		if _, err := c.DeleteAlarm(ctx, ns, cam, "poll"); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "duplicate deliveries answered from memory: %d\n", replayed)
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
