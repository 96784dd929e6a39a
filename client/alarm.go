package client

import (
	"context"
	"iter"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func alarms(conn *grpc.ClientConn) cairnv1.AlarmServiceClient {
	return cairnv1.NewAlarmServiceClient(conn)
}

// AlarmSpec describes an alarm to set.
type AlarmSpec struct {
	// Name is the alarm's name; empty means "default".
	Name string
	// FireAt is when it fires; FireIn, when FireAt is zero, is how long
	// after the write it fires (by the leader's clock).
	FireAt time.Time
	FireIn time.Duration
	// Payload is delivered with the alarm (at most 64 KiB).
	Payload []byte
	// RepeatEvery, when set, re-arms the alarm after each delivery.
	RepeatEvery time.Duration
}

// SetAlarm sets (or replaces) an alarm on an object.
func (c *Client) SetAlarm(ctx context.Context, ns, object string, spec AlarmSpec, opts ...WriteOption) (*cairnv1.SetAlarmResponse, error) {
	o := writeOpts(opts)
	req := &cairnv1.SetAlarmRequest{Namespace: ns, Object: object, Name: spec.Name, Payload: spec.Payload, RequestId: o.requestID}
	if !spec.FireAt.IsZero() {
		req.When = &cairnv1.SetAlarmRequest_FireAt{FireAt: timestamppb.New(spec.FireAt)}
	} else {
		req.When = &cairnv1.SetAlarmRequest_FireIn{FireIn: durationpb.New(spec.FireIn)}
	}
	if spec.RepeatEvery > 0 {
		req.RepeatEvery = durationpb.New(spec.RepeatEvery)
	}
	var resp *cairnv1.SetAlarmResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = alarms(conn).SetAlarm(ctx, req)
		return err
	})
	return resp, err
}

// Alarm reads one alarm; a missing one is ErrNotFound.
func (c *Client) Alarm(ctx context.Context, ns, object, name string, opts ...ReadOption) (*cairnv1.Alarm, error) {
	o := readOpts(opts)
	var resp *cairnv1.GetAlarmResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = alarms(conn).GetAlarm(ctx, &cairnv1.GetAlarmRequest{Namespace: ns, Object: object, Name: name,
			Consistency: o.consistency, MaxStalenessMs: o.maxStaleness})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Alarm, nil
}

// DeleteAlarm deletes an alarm and reports whether it existed.
func (c *Client) DeleteAlarm(ctx context.Context, ns, object, name string, opts ...WriteOption) (bool, error) {
	o := writeOpts(opts)
	var resp *cairnv1.DeleteAlarmResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = alarms(conn).DeleteAlarm(ctx, &cairnv1.DeleteAlarmRequest{Namespace: ns, Object: object, Name: name, RequestId: o.requestID})
		return err
	})
	if err != nil {
		return false, err
	}
	return resp.Deleted, nil
}

// AlarmFilter selects alarms for Alarms.
type AlarmFilter struct {
	// State is "pending", "delivering" or "dead"; empty means all.
	State                string
	Object, ObjectPrefix string
	NoPayloads           bool
}

// Alarms walks a namespace's alarms, in object and name order.
func (c *Client) Alarms(ctx context.Context, ns string, f AlarmFilter, opts ...ReadOption) iter.Seq2[*cairnv1.Alarm, error] {
	o := readOpts(opts)
	return func(yield func(*cairnv1.Alarm, error) bool) {
		token := ""
		for {
			var resp *cairnv1.ListAlarmsResponse
			err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
				resp, err = alarms(conn).ListAlarms(ctx, &cairnv1.ListAlarmsRequest{Namespace: ns, State: f.State, Object: f.Object,
					ObjectPrefix: f.ObjectPrefix, NoPayloads: f.NoPayloads, PageToken: token, Consistency: o.consistency, MaxStalenessMs: o.maxStaleness})
				return err
			})
			if err != nil {
				yield(nil, err)
				return
			}
			for _, a := range resp.Alarms {
				if !yield(a, nil) {
					return
				}
			}
			if resp.NextPageToken == "" {
				return
			}
			token = resp.NextPageToken
		}
	}
}

// ClaimAlarms leases up to max due alarms of a pull namespace to worker
// for lease; ack each with AckAlarms before the lease ends.
func (c *Client) ClaimAlarms(ctx context.Context, ns, worker string, max uint32, lease time.Duration, opts ...WriteOption) ([]*cairnv1.Alarm, error) {
	o := writeOpts(opts)
	var resp *cairnv1.ClaimAlarmsResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = alarms(conn).ClaimAlarms(ctx, &cairnv1.ClaimAlarmsRequest{Namespace: ns, Worker: worker, Max: max,
			Lease: durationpb.New(lease), RequestId: o.requestID})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Alarms, nil
}

// AckAlarms ends leases: done, or retry with an error.
func (c *Client) AckAlarms(ctx context.Context, ns string, acks []*cairnv1.AlarmAck, opts ...WriteOption) (*cairnv1.AckAlarmsResponse, error) {
	o := writeOpts(opts)
	var resp *cairnv1.AckAlarmsResponse
	err := c.call(ctx, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
		resp, err = alarms(conn).AckAlarms(ctx, &cairnv1.AckAlarmsRequest{Namespace: ns, Acks: acks, RequestId: o.requestID})
		return err
	})
	return resp, err
}
