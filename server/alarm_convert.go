package server

import (
	"encoding/binary"
	"net/url"
	"strings"
	"time"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Conversions between the public alarm API and the log's alarm records.

func msTime(ms int64) *timestamppb.Timestamp {
	if ms == 0 {
		return nil
	}
	return timestamppb.New(time.UnixMilli(ms))
}

// toAPIAlarm turns a stored alarm into the API's Alarm.
func toAPIAlarm(a *raftcmdv1.StoredAlarm) *cairnv1.Alarm {
	r := a.GetRecord()
	out := &cairnv1.Alarm{
		Object: a.GetObject(), Name: a.GetName(),
		FireAt: msTime(r.GetFireAtMs()), Payload: r.GetPayload(),
		Attempt: r.GetAttempt(), LeaseId: r.GetLeaseId(), Holder: r.GetHolder(),
		LeaseExpiresAt: msTime(r.GetLeaseExpiresMs()), LastError: r.GetLastError(),
		CreateRevision: r.GetCreateRevision(), ModRevision: r.GetModRevision(),
	}
	if r.GetRepeatEveryMs() > 0 {
		out.RepeatEvery = durationpb.New(time.Duration(r.RepeatEveryMs) * time.Millisecond)
	}
	switch r.GetState() {
	case raftcmdv1.AlarmState_ALARM_STATE_PENDING:
		out.State = cairnv1.AlarmState_ALARM_STATE_PENDING
		out.NextAttemptAt = msTime(r.GetNextDueMs())
	case raftcmdv1.AlarmState_ALARM_STATE_DELIVERING:
		out.State = cairnv1.AlarmState_ALARM_STATE_DELIVERING
		out.NextAttemptAt = msTime(r.GetNextDueMs())
	case raftcmdv1.AlarmState_ALARM_STATE_DEAD:
		out.State = cairnv1.AlarmState_ALARM_STATE_DEAD
	}
	return out
}

// parseAlarmState reads a listing's state filter: pending, delivering or
// dead (any case, with or without the ALARM_STATE_ prefix); empty is all.
func parseAlarmState(s string) (raftcmdv1.AlarmState, error) {
	switch strings.TrimPrefix(strings.ToLower(s), "alarm_state_") {
	case "":
		return raftcmdv1.AlarmState_ALARM_STATE_UNSPECIFIED, nil
	case "pending":
		return raftcmdv1.AlarmState_ALARM_STATE_PENDING, nil
	case "delivering":
		return raftcmdv1.AlarmState_ALARM_STATE_DELIVERING, nil
	case "dead":
		return raftcmdv1.AlarmState_ALARM_STATE_DEAD, nil
	}
	return 0, invalidf("state is %q; use pending, delivering or dead", s)
}

// alarmPageToken and parseAlarmPageToken carry a listing's last alarm.
func alarmPageToken(last *raftcmdv1.AlarmRef) string {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(last.Object)))
	return pageToken('a', string(append(append(b, last.Object...), last.Name...)))
}

func parseAlarmPageToken(token string) (*raftcmdv1.AlarmRef, error) {
	s, err := parsePageToken('a', token)
	if err != nil || s == "" {
		return nil, err
	}
	if len(s) < 2 || len(s) < 2+int(binary.BigEndian.Uint16([]byte(s))) {
		return nil, invalidf("page_token is not one this listing returned")
	}
	n := int(binary.BigEndian.Uint16([]byte(s)))
	return &raftcmdv1.AlarmRef{Object: s[2 : 2+n], Name: s[2+n:]}, nil
}

// alarmSettingsToLog validates a request's alarm settings and turns them
// into the log's namespace settings fields (set on out).
func alarmSettingsToLog(in *cairnv1.AlarmSettings, out *raftcmdv1.NamespaceSettings) error {
	if in == nil {
		return nil
	}
	if in.WebhookUrl != "" {
		u, err := url.Parse(in.WebhookUrl)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalidf("alarms.webhook_url %q is not an absolute http:// or https:// URL", in.WebhookUrl)
		}
	}
	out.AlarmWebhookUrl = in.WebhookUrl
	out.AlarmWebhookSecret = in.WebhookSecret
	out.AlarmRetryInitialMs = in.RetryInitialMs
	out.AlarmMaxRetries = in.MaxRetries
	out.AlarmLeaseMs = in.LeaseMs
	return fsm.ValidateAlarmSettings(out)
}

// toAPIAlarmSettings returns a namespace's effective alarm settings; the
// secret is never returned, only whether one is set.
func toAPIAlarmSettings(s *raftcmdv1.NamespaceSettings) *cairnv1.AlarmSettings {
	eff := fsm.EffectiveAlarmSettings(s)
	maxRetries := eff.MaxRetries
	out := &cairnv1.AlarmSettings{
		WebhookUrl: eff.WebhookURL, WebhookSecretSet: eff.WebhookSecret != "",
		RetryInitialMs: uint64(eff.RetryInitialMs), MaxRetries: &maxRetries, LeaseMs: uint64(eff.LeaseMs),
		Delivery: cairnv1.AlarmDelivery_ALARM_DELIVERY_PULL,
	}
	if eff.Webhook() {
		out.Delivery = cairnv1.AlarmDelivery_ALARM_DELIVERY_WEBHOOK
	}
	return out
}

func toAPIAlarmCounts(c *raftcmdv1.AlarmCounts) *cairnv1.AlarmCounts {
	return &cairnv1.AlarmCounts{Pending: c.GetPending(), Delivering: c.GetDelivering(), Dead: c.GetDead()}
}
