package fsm

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
)

// Alarm storage (see DESIGN.md):
//
//	shard bucket  'a' + lp(ns) + lp(object) + name     -> raftcmdv1.AlarmRecord
//	alarms        lp(ns) + esc(object) + 0x00 + name    -> empty (listing in object order)
//	alarm_due     lp(ns) + kind + due ms (uint64 BE) + lp(object) + name -> empty
//
// The due index holds pending alarms under kind 'p' at their next_due_ms
// and delivering ones under kind 'l' at their lease_expires_ms; dead
// alarms are not in it. So the scheduler finds what is due, and what
// leases have run out, with one seek each, and a new leader finds every
// outstanding lease without reading pending alarms.
var (
	bucketAlarms   = []byte("alarms")
	bucketAlarmDue = []byte("alarm_due")
)

const (
	prefixAlarm    = byte('a')
	duePending     = byte('p')
	dueLeased      = byte('l')
	escapeTerminal = byte(0x00)
	escapeByte     = byte(0xff)
)

// Alarm limits, fixed by the log format like those of limits.go.
const (
	// DefaultAlarmName is the name of an alarm set without one.
	DefaultAlarmName = "default"
	// MaxAlarmNameBytes is the longest alarm name.
	MaxAlarmNameBytes = 256
	// MaxAlarmPayloadBytes is the largest alarm payload.
	MaxAlarmPayloadBytes = 64 << 10
	// MinAlarmRepeatEveryMs and MaxAlarmRepeatEveryMs bound repeat_every.
	MinAlarmRepeatEveryMs = 100
	MaxAlarmRepeatEveryMs = 366 * 24 * 3600 * 1000
	// MaxAlarmFireAtMs is 9999-12-31T23:59:59.999Z.
	MaxAlarmFireAtMs = 253402300799999
	// maxAlarmFireInMs bounds a relative fire time (100 years).
	maxAlarmFireInMs = 100 * 366 * 24 * 3600 * 1000
	// Defaults of a namespace's alarm settings.
	DefaultAlarmRetryInitialMs = 2000
	DefaultAlarmMaxRetries     = 6
	DefaultAlarmLeaseMs        = 10000
	// Bounds of a namespace's alarm settings and of a claim's lease.
	MinAlarmRetryInitialMs = 10
	MaxAlarmRetryInitialMs = 3600 * 1000
	MaxAlarmRetries        = 100
	MinAlarmLeaseMs        = 100
	MaxAlarmLeaseMs        = 3600 * 1000
	// maxAlarmBackoffMs caps one retry's delay at a day.
	maxAlarmBackoffMs = 24 * 3600 * 1000
	// MaxClaimAlarms is the most alarms one claim leases.
	MaxClaimAlarms = 100
	// claimMaxBytes ends a claim early once its payloads reach this size
	// (a claim always leases at least one due alarm).
	claimMaxBytes = 2 << 20
	// MaxAlarmRefs bounds the alarms of one BeginDelivery or AckAlarms.
	MaxAlarmRefs = 1000
	// MaxAlarmHolderBytes bounds a lease holder's name; MaxLeaseIDBytes a
	// lease id (holder, '@', index).
	MaxAlarmHolderBytes = 256
	MaxLeaseIDBytes     = MaxAlarmHolderBytes + 21
	// MaxAlarmErrorBytes bounds the error an ack records.
	MaxAlarmErrorBytes = 1024
	// MaxWebhookURLBytes and MaxWebhookSecretBytes bound the settings.
	MaxWebhookURLBytes    = 2048
	MaxWebhookSecretBytes = 256
)

// alarmKey is the key of an alarm's record in its object's shard bucket.
func alarmKey(ns, object, name string) []byte {
	return append(alarmObjectPrefix(ns, object), name...)
}

// alarmObjectPrefix is the prefix of all of an object's alarms in its
// shard bucket.
func alarmObjectPrefix(ns, object string) []byte {
	b := make([]byte, 0, 5+len(ns)+len(object)+16)
	b = append(b, prefixAlarm)
	return appendLP(appendLP(b, ns), object)
}

// appendEscaped appends s so that the encodings of two strings, each
// followed by escapeTerminal, sort as the strings do: 0x00 becomes 0x00
// 0xff and the terminator is 0x00 (the tuple encoding of FoundationDB).
// An object name may hold any UTF-8, 0x00 included.
func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		b = append(b, s[i])
		if s[i] == escapeTerminal {
			b = append(b, escapeByte)
		}
	}
	return b
}

// alarmIndexKey is an alarm's key in bucketAlarms.
func alarmIndexKey(ns, object, name string) []byte {
	b := appendLP(make([]byte, 0, 3+len(ns)+len(object)+len(name)), ns)
	b = appendEscaped(b, object)
	b = append(b, escapeTerminal)
	return append(b, name...)
}

// parseAlarmIndexKey splits the part of an alarm index key after lp(ns).
func parseAlarmIndexKey(b []byte) (object, name string, err error) {
	obj := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != escapeTerminal {
			obj = append(obj, b[i])
			continue
		}
		if i+1 < len(b) && b[i+1] == escapeByte {
			obj = append(obj, escapeTerminal)
			i++
			continue
		}
		return string(obj), string(b[i+1:]), nil
	}
	return "", "", fmt.Errorf("fsm: alarm index key without terminator")
}

// alarmDueKey is an alarm's key in bucketAlarmDue.
func alarmDueKey(ns string, kind byte, due int64, object, name string) []byte {
	b := appendLP(make([]byte, 0, 15+len(ns)+len(object)+len(name)), ns)
	b = append(b, kind)
	b = binary.BigEndian.AppendUint64(b, uint64(due))
	b = appendLP(b, object)
	return append(b, name...)
}

// dueKeyOf returns rec's key in the due index, nil when it has none.
func dueKeyOf(ns, object, name string, rec *raftcmdv1.AlarmRecord) []byte {
	switch rec.GetState() {
	case raftcmdv1.AlarmState_ALARM_STATE_PENDING:
		return alarmDueKey(ns, duePending, rec.NextDueMs, object, name)
	case raftcmdv1.AlarmState_ALARM_STATE_DELIVERING:
		return alarmDueKey(ns, dueLeased, rec.LeaseExpiresMs, object, name)
	}
	return nil
}

// parseDueRef splits the lp(object) + name tail of a due index key.
func parseDueRef(b []byte) (object, name string, err error) {
	if len(b) < 2 {
		return "", "", fmt.Errorf("fsm: truncated alarm due key")
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return "", "", fmt.Errorf("fsm: truncated alarm due key")
	}
	return string(b[2 : 2+n]), string(b[2+n:]), nil
}

// AlarmName returns the name an alarm is stored under: name, or
// DefaultAlarmName when it is empty.
func AlarmName(name string) string {
	if name == "" {
		return DefaultAlarmName
	}
	return name
}

// ValidateAlarmName reports whether name (after AlarmName) is a valid
// alarm name: valid UTF-8, 1 to MaxAlarmNameBytes bytes.
func ValidateAlarmName(field, name string) error {
	if len(name) > MaxAlarmNameBytes {
		return fmt.Errorf("%w: %s is %d bytes, limit is %d", ErrInvalidArgument, field, len(name), MaxAlarmNameBytes)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidArgument, field)
	}
	return nil
}

// ValidateAlarmSpec checks everything of an alarm but its object name.
// field names the alarm in errors ("alarm", "success[2].set_alarm").
func ValidateAlarmSpec(field string, s *raftcmdv1.AlarmSpec) error {
	if err := ValidateAlarmName(field+".name", s.GetName()); err != nil {
		return err
	}
	switch {
	case s.FireInMs != nil && s.FireAtMs != 0:
		return fmt.Errorf("%w: %s: give fire_at or fire_in, not both", ErrInvalidArgument, field)
	case s.FireInMs != nil:
		if *s.FireInMs < 0 || *s.FireInMs > maxAlarmFireInMs {
			return fmt.Errorf("%w: %s.fire_in is %d ms; allowed are 0 to %d (100 years)", ErrInvalidArgument, field, *s.FireInMs, int64(maxAlarmFireInMs))
		}
	case s.GetFireAtMs() < 1 || s.GetFireAtMs() > MaxAlarmFireAtMs:
		return fmt.Errorf("%w: %s.fire_at is %d ms since the epoch; allowed are 1 to %d (year 9999)", ErrInvalidArgument, field, s.GetFireAtMs(), int64(MaxAlarmFireAtMs))
	}
	if len(s.GetPayload()) > MaxAlarmPayloadBytes {
		return fmt.Errorf("%w: %s.payload is %d bytes, limit is %d", ErrInvalidArgument, field, len(s.GetPayload()), MaxAlarmPayloadBytes)
	}
	if r := s.GetRepeatEveryMs(); r != 0 && (r < MinAlarmRepeatEveryMs || r > MaxAlarmRepeatEveryMs) {
		return fmt.Errorf("%w: %s.repeat_every is %d ms; allowed are %d ms to %d ms (366 days), or none", ErrInvalidArgument, field, r, MinAlarmRepeatEveryMs, int64(MaxAlarmRepeatEveryMs))
	}
	return nil
}

// ValidateAlarmHolder checks a lease holder's name.
func ValidateAlarmHolder(field, holder string) error {
	if holder == "" {
		return fmt.Errorf("%w: %s must not be empty", ErrInvalidArgument, field)
	}
	if len(holder) > MaxAlarmHolderBytes {
		return fmt.Errorf("%w: %s is %d bytes, limit is %d", ErrInvalidArgument, field, len(holder), MaxAlarmHolderBytes)
	}
	if !utf8.ValidString(holder) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidArgument, field)
	}
	return nil
}

// ValidateAlarmLease checks a lease duration.
func ValidateAlarmLease(field string, ms int64) error {
	if ms < MinAlarmLeaseMs || ms > MaxAlarmLeaseMs {
		return fmt.Errorf("%w: %s is %d ms; allowed are %d ms to %d ms", ErrInvalidArgument, field, ms, MinAlarmLeaseMs, MaxAlarmLeaseMs)
	}
	return nil
}

// AlarmSettings are a namespace's effective alarm settings: its stored
// ones with the defaults filled in.
type AlarmSettings struct {
	// WebhookURL is where the leader delivers; empty means pull delivery.
	WebhookURL    string
	WebhookSecret string
	// RetryInitialMs is the first retry's delay; each further retry waits
	// twice as long as the one before.
	RetryInitialMs int64
	// MaxRetries is how many failed attempts are retried; the alarm is
	// dead after MaxRetries+1 failed attempts.
	MaxRetries uint32
	// LeaseMs is the webhook timeout and a claim's default lease.
	LeaseMs int64
}

// Webhook reports whether alarms are delivered by webhook.
func (s AlarmSettings) Webhook() bool { return s.WebhookURL != "" }

// EffectiveAlarmSettings returns the alarm settings of a namespace's
// settings, with defaults for what is unset.
func EffectiveAlarmSettings(s *raftcmdv1.NamespaceSettings) AlarmSettings {
	out := AlarmSettings{
		WebhookURL: s.GetAlarmWebhookUrl(), WebhookSecret: s.GetAlarmWebhookSecret(),
		RetryInitialMs: int64(s.GetAlarmRetryInitialMs()), MaxRetries: DefaultAlarmMaxRetries, LeaseMs: int64(s.GetAlarmLeaseMs()),
	}
	if out.RetryInitialMs == 0 {
		out.RetryInitialMs = DefaultAlarmRetryInitialMs
	}
	if s != nil && s.AlarmMaxRetries != nil {
		out.MaxRetries = *s.AlarmMaxRetries
	}
	if out.LeaseMs == 0 {
		out.LeaseMs = DefaultAlarmLeaseMs
	}
	return out
}

// ValidateAlarmSettings checks the alarm part of namespace settings.
func ValidateAlarmSettings(s *raftcmdv1.NamespaceSettings) error {
	u, secret := s.GetAlarmWebhookUrl(), s.GetAlarmWebhookSecret()
	if len(u) > MaxWebhookURLBytes {
		return fmt.Errorf("%w: alarms.webhook_url is %d bytes, limit is %d", ErrInvalidArgument, len(u), MaxWebhookURLBytes)
	}
	if len(secret) > MaxWebhookSecretBytes {
		return fmt.Errorf("%w: alarms.webhook_secret is %d bytes, limit is %d", ErrInvalidArgument, len(secret), MaxWebhookSecretBytes)
	}
	if u != "" && secret == "" {
		return fmt.Errorf("%w: alarms.webhook_secret is required with a webhook_url (it signs every delivery)", ErrInvalidArgument)
	}
	if r := s.GetAlarmRetryInitialMs(); r != 0 && (r < MinAlarmRetryInitialMs || r > MaxAlarmRetryInitialMs) {
		return fmt.Errorf("%w: alarms.retry_initial_ms is %d; allowed are %d to %d, or 0 for %d", ErrInvalidArgument, r, MinAlarmRetryInitialMs, MaxAlarmRetryInitialMs, DefaultAlarmRetryInitialMs)
	}
	if s != nil && s.AlarmMaxRetries != nil && *s.AlarmMaxRetries > MaxAlarmRetries {
		return fmt.Errorf("%w: alarms.max_retries is %d, limit is %d", ErrInvalidArgument, *s.AlarmMaxRetries, MaxAlarmRetries)
	}
	if l := s.GetAlarmLeaseMs(); l != 0 && (l < MinAlarmLeaseMs || l > MaxAlarmLeaseMs) {
		return fmt.Errorf("%w: alarms.lease_ms is %d; allowed are %d to %d, or 0 for %d", ErrInvalidArgument, l, MinAlarmLeaseMs, MaxAlarmLeaseMs, DefaultAlarmLeaseMs)
	}
	return nil
}
