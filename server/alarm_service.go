package server

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// alarmService serves AlarmService: alarms are written through the log
// like keys, read at the asked consistency, and, in pull namespaces,
// claimed and acked by workers. Webhook delivery is the leader's
// scheduler's (alarm_scheduler.go).
type alarmService struct {
	cairnv1.UnimplementedAlarmServiceServer
	s *Server
}

const (
	// defaultClaimMax is the claim size when a request gives none.
	defaultClaimMax = 10
	// defaultWorker names a worker that gives no name.
	defaultWorker = "worker"
	// leaderHolderPrefix starts the lease holder of the leader's webhook
	// deliveries; workers may not use it.
	leaderHolderPrefix = "leader:"
	// alarmListScan bounds the alarms one listing page examines.
	alarmListScan = 10000
)

// alarmSpec validates an alarm as a request gives it and turns it into
// the log's AlarmSpec. fireIn is used when fireAt is nil.
func alarmSpec(field, object, name string, fireAt *timestamppb.Timestamp, fireIn *durationpb.Duration, payload []byte, repeat *durationpb.Duration) (*raftcmdv1.AlarmSpec, error) {
	if err := fsm.ValidateObjectName(object); err != nil {
		return nil, invalidf("%s.%s", field, userMessage(err))
	}
	spec := &raftcmdv1.AlarmSpec{Object: object, Name: fsm.AlarmName(name), Payload: payload}
	switch {
	case fireAt != nil:
		if err := fireAt.CheckValid(); err != nil {
			return nil, invalidf("%s.fire_at: %v", field, err)
		}
		spec.FireAtMs = fireAt.AsTime().UnixMilli()
	case fireIn != nil:
		if err := fireIn.CheckValid(); err != nil {
			return nil, invalidf("%s.fire_in: %v", field, err)
		}
		ms := fireIn.AsDuration().Milliseconds()
		spec.FireInMs = &ms
	default:
		return nil, invalidf("%s: fire_at (an RFC 3339 time) or fire_in (a duration such as \"30s\") is required", field)
	}
	if repeat != nil {
		if err := repeat.CheckValid(); err != nil {
			return nil, invalidf("%s.repeat_every: %v", field, err)
		}
		spec.RepeatEveryMs = repeat.AsDuration().Milliseconds()
		if spec.RepeatEveryMs == 0 && repeat.AsDuration() != 0 {
			spec.RepeatEveryMs = -1 // under a millisecond: refused below
		}
	}
	if err := fsm.ValidateAlarmSpec(field, spec); err != nil {
		return nil, err
	}
	return spec, nil
}

func (a *alarmService) SetAlarm(ctx context.Context, req *cairnv1.SetAlarmRequest) (*cairnv1.SetAlarmResponse, error) {
	if err := checkNamespace(req.Namespace); err != nil {
		return nil, err
	}
	spec, err := alarmSpec("alarm", req.Object, req.Name, req.GetFireAt(), req.GetFireIn(), req.Payload, req.RepeatEvery)
	if err != nil {
		return nil, err
	}
	res, err := a.s.propose(ctx, &raftcmdv1.Command{RequestId: req.RequestId, Op: &raftcmdv1.Command_SetAlarm{
		SetAlarm: &raftcmdv1.SetAlarm{Namespace: req.Namespace, Alarm: spec},
	}})
	if err != nil {
		return nil, err
	}
	r := res.GetAlarm()
	return &cairnv1.SetAlarmResponse{Header: a.s.writeHeader(res), Alarm: toAPIAlarm(r.GetAlarm()), Created: r.GetCreated()}, nil
}

func (a *alarmService) GetAlarm(ctx context.Context, req *cairnv1.GetAlarmRequest) (*cairnv1.GetAlarmResponse, error) {
	if err := checkObject(req.Namespace, req.Object); err != nil {
		return nil, err
	}
	if err := fsm.ValidateAlarmName("name", fsm.AlarmName(req.Name)); err != nil {
		return nil, err
	}
	h, err := a.s.readBarrier(ctx, req.Consistency, req.MaxStalenessMs)
	if err != nil {
		return nil, err
	}
	al, err := a.s.state.Alarm(req.Namespace, req.Object, req.Name)
	if err != nil {
		return nil, err
	}
	return &cairnv1.GetAlarmResponse{Header: h, Alarm: toAPIAlarm(al)}, nil
}

func (a *alarmService) DeleteAlarm(ctx context.Context, req *cairnv1.DeleteAlarmRequest) (*cairnv1.DeleteAlarmResponse, error) {
	if err := checkObject(req.Namespace, req.Object); err != nil {
		return nil, err
	}
	name := fsm.AlarmName(req.Name)
	if err := fsm.ValidateAlarmName("name", name); err != nil {
		return nil, err
	}
	res, err := a.s.propose(ctx, &raftcmdv1.Command{RequestId: req.RequestId, Op: &raftcmdv1.Command_DeleteAlarm{
		DeleteAlarm: &raftcmdv1.DeleteAlarm{Namespace: req.Namespace, Alarm: &raftcmdv1.AlarmRef{Object: req.Object, Name: name}},
	}})
	if err != nil {
		return nil, err
	}
	return &cairnv1.DeleteAlarmResponse{Header: a.s.writeHeader(res), Deleted: res.GetAlarm().GetDeleted()}, nil
}

func (a *alarmService) ListAlarms(ctx context.Context, req *cairnv1.ListAlarmsRequest) (*cairnv1.ListAlarmsResponse, error) {
	if err := checkNamespace(req.Namespace); err != nil {
		return nil, err
	}
	state, err := parseAlarmState(req.State)
	if err != nil {
		return nil, err
	}
	limit, err := listLimit(req.Limit)
	if err != nil {
		return nil, err
	}
	if req.Object != "" {
		if err := fsm.ValidateObjectName(req.Object); err != nil {
			return nil, err
		}
		if req.ObjectPrefix != "" {
			return nil, invalidf("give object or object_prefix, not both")
		}
	}
	if len(req.ObjectPrefix) > fsm.MaxObjectNameBytes {
		return nil, invalidf("object_prefix is %d bytes, limit is %d", len(req.ObjectPrefix), fsm.MaxObjectNameBytes)
	}
	after, err := parseAlarmPageToken(req.PageToken)
	if err != nil {
		return nil, err
	}
	h, err := a.s.readBarrier(ctx, req.Consistency, req.MaxStalenessMs)
	if err != nil {
		return nil, err
	}
	page, err := a.s.state.Alarms(req.Namespace, fsm.AlarmFilter{
		State: state, Object: req.Object, ObjectPrefix: req.ObjectPrefix, After: after, NoPayloads: req.NoPayloads,
	}, limit, alarmListScan)
	if err != nil {
		return nil, err
	}
	ns, err := a.s.state.Namespace(req.Namespace)
	if err != nil {
		return nil, err
	}
	resp := &cairnv1.ListAlarmsResponse{Header: h, Alarms: make([]*cairnv1.Alarm, 0, len(page.Alarms)), Counts: toAPIAlarmCounts(ns.GetAlarms())}
	for _, al := range page.Alarms {
		resp.Alarms = append(resp.Alarms, toAPIAlarm(al))
	}
	if page.More && page.Last != nil {
		resp.NextPageToken = alarmPageToken(page.Last)
	}
	return resp, nil
}

// workerName validates a worker's name ("worker" when empty).
func workerName(field, w string) (string, error) {
	if w == "" {
		return defaultWorker, nil
	}
	if strings.HasPrefix(w, leaderHolderPrefix) {
		return "", invalidf("%s must not start with %q (the leader's deliveries use it)", field, leaderHolderPrefix)
	}
	if err := fsm.ValidateAlarmHolder(field, w); err != nil {
		return "", err
	}
	return w, nil
}

// leaseMs validates an optional lease (0: the namespace's).
func leaseMs(field string, d *durationpb.Duration) (int64, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, invalidf("%s: %v", field, err)
	}
	ms := d.AsDuration().Milliseconds()
	if err := fsm.ValidateAlarmLease(field, ms); err != nil {
		return 0, err
	}
	return ms, nil
}

func (a *alarmService) ClaimAlarms(ctx context.Context, req *cairnv1.ClaimAlarmsRequest) (*cairnv1.ClaimAlarmsResponse, error) {
	if err := checkNamespace(req.Namespace); err != nil {
		return nil, err
	}
	max := req.Max
	if max == 0 {
		max = defaultClaimMax
	}
	if max > fsm.MaxClaimAlarms {
		return nil, invalidf("max is %d, limit is %d", max, fsm.MaxClaimAlarms)
	}
	lease, err := leaseMs("lease", req.Lease)
	if err != nil {
		return nil, err
	}
	worker, err := workerName("worker", req.Worker)
	if err != nil {
		return nil, err
	}
	alarms, h, err := a.s.claimAlarms(ctx, req.Namespace, max, lease, worker, req.RequestId, 0)
	if err != nil {
		return nil, err
	}
	return &cairnv1.ClaimAlarmsResponse{Header: h, Alarms: alarms}, nil
}

// claimAlarms proposes one claim and returns the alarms leased.
// retentionMs is the request id's window (0: the configured one).
func (s *Server) claimAlarms(ctx context.Context, ns string, max uint32, lease int64, worker, requestID string, retentionMs int64) ([]*cairnv1.Alarm, *cairnv1.ResponseHeader, error) {
	res, err := s.propose(ctx, &raftcmdv1.Command{RequestId: requestID, RequestRetentionMs: retentionMs, Op: &raftcmdv1.Command_ClaimAlarms{
		ClaimAlarms: &raftcmdv1.ClaimAlarms{Namespace: ns, Max: max, LeaseMs: lease, Holder: worker},
	}})
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	out := make([]*cairnv1.Alarm, 0, len(res.GetAlarms().GetAlarms()))
	for _, al := range res.GetAlarms().GetAlarms() {
		if !res.Replayed {
			s.alarmMetrics.attempt("claimed")
			s.alarmMetrics.observeDelay(now, al.GetRecord().GetNextDueMs())
		}
		out = append(out, toAPIAlarm(al))
	}
	return out, s.writeHeader(res), nil
}

func (a *alarmService) AckAlarms(ctx context.Context, req *cairnv1.AckAlarmsRequest) (*cairnv1.AckAlarmsResponse, error) {
	if err := checkNamespace(req.Namespace); err != nil {
		return nil, err
	}
	if len(req.Acks) == 0 || len(req.Acks) > fsm.MaxAlarmRefs {
		return nil, invalidf("acks holds %d entries; allowed are 1 to %d", len(req.Acks), fsm.MaxAlarmRefs)
	}
	cmd := &raftcmdv1.AckAlarms{Namespace: req.Namespace}
	for i, ack := range req.Acks {
		field := fmt.Sprintf("acks[%d]", i)
		if err := fsm.ValidateObjectName(ack.Object); err != nil {
			return nil, invalidf("%s.%s", field, userMessage(err))
		}
		la := &raftcmdv1.AlarmAck{Object: ack.Object, Name: fsm.AlarmName(ack.Name), LeaseId: ack.LeaseId}
		switch r := ack.Result.(type) {
		case *cairnv1.AlarmAck_Done:
			if !r.Done {
				return nil, invalidf("%s: done must be true; report a failure with retry", field)
			}
			la.Kind = raftcmdv1.AckKind_ACK_KIND_DONE
		case *cairnv1.AlarmAck_Retry:
			la.Kind, la.Error = raftcmdv1.AckKind_ACK_KIND_RETRY, truncate(r.Retry.GetError(), fsm.MaxAlarmErrorBytes)
		default:
			return nil, invalidf("%s: one of done (true) or retry is required", field)
		}
		if ack.LeaseId == "" {
			return nil, invalidf("%s.lease_id is required (the claim gave it)", field)
		}
		cmd.Acks = append(cmd.Acks, la)
	}
	res, err := a.s.propose(ctx, &raftcmdv1.Command{RequestId: req.RequestId, Op: &raftcmdv1.Command_AckAlarms{AckAlarms: cmd}})
	if err != nil {
		return nil, err
	}
	resp := &cairnv1.AckAlarmsResponse{Header: a.s.writeHeader(res)}
	for i, out := range res.GetAck().GetOutcomes() {
		r := &cairnv1.AlarmAckResult{Object: cmd.Acks[i].Object, Name: cmd.Acks[i].Name, Status: ackStatus(out.Status), Error: out.Error}
		if out.Alarm != nil {
			r.Alarm = toAPIAlarm(out.Alarm)
		}
		if !res.Replayed {
			a.s.alarmMetrics.ackOutcome(out.Status)
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func ackStatus(s raftcmdv1.AckStatus) cairnv1.AlarmAckStatus {
	switch s {
	case raftcmdv1.AckStatus_ACK_STATUS_COMPLETED:
		return cairnv1.AlarmAckStatus_ALARM_ACK_STATUS_COMPLETED
	case raftcmdv1.AckStatus_ACK_STATUS_REARMED:
		return cairnv1.AlarmAckStatus_ALARM_ACK_STATUS_REARMED
	case raftcmdv1.AckStatus_ACK_STATUS_RETRY_SCHEDULED:
		return cairnv1.AlarmAckStatus_ALARM_ACK_STATUS_RETRY_SCHEDULED
	case raftcmdv1.AckStatus_ACK_STATUS_DEAD:
		return cairnv1.AlarmAckStatus_ALARM_ACK_STATUS_DEAD
	case raftcmdv1.AckStatus_ACK_STATUS_REQUEUED:
		return cairnv1.AlarmAckStatus_ALARM_ACK_STATUS_REQUEUED
	case raftcmdv1.AckStatus_ACK_STATUS_STALE:
		return cairnv1.AlarmAckStatus_ALARM_ACK_STATUS_STALE
	}
	return cairnv1.AlarmAckStatus_ALARM_ACK_STATUS_UNSPECIFIED
}

// truncate makes s valid UTF-8 (a log entry's strings must be) and cuts
// it to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) { // only the last rune can be cut
		s = s[:len(s)-1]
	}
	return s
}
