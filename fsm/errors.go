package fsm

import "errors"

// Domain errors of the state machine. They are results, not failures: a
// command that meets one changes nothing and every replica answers it the
// same way. Callers match them with errors.Is; the messages that wrap them
// name the field and the limit.
var (
	// ErrInvalidArgument: a name, key or value breaks a fixed limit.
	ErrInvalidArgument = errors.New("fsm: invalid argument")
	// ErrNamespaceNotFound: the namespace does not exist.
	ErrNamespaceNotFound = errors.New("fsm: namespace not found")
	// ErrNamespaceNotEmpty: a namespace with objects cannot be deleted
	// without force.
	ErrNamespaceNotEmpty = errors.New("fsm: namespace not empty")
	// ErrObjectNotFound: the object has no state.
	ErrObjectNotFound = errors.New("fsm: object not found")
	// ErrKeyNotFound: the key does not exist.
	ErrKeyNotFound = errors.New("fsm: key not found")
	// ErrQuotaExceeded: the write would pass the namespace's per-object
	// storage quota.
	ErrQuotaExceeded = errors.New("fsm: object quota exceeded")
	// ErrRequestIDReused: a request id already used, within its retention
	// window, for a different request.
	ErrRequestIDReused = errors.New("fsm: request id reused")
	// ErrAlarmNotFound: the alarm does not exist.
	ErrAlarmNotFound = errors.New("fsm: alarm not found")
	// ErrStaleAck: every ack of an AckAlarms names a lease that is no
	// longer the alarm's (it expired, was acked, or the alarm was set
	// again or deleted).
	ErrStaleAck = errors.New("fsm: stale ack")
	// ErrWrongDeliveryMode: a claim in a namespace whose alarms go to a
	// webhook.
	ErrWrongDeliveryMode = errors.New("fsm: wrong alarm delivery mode")
	// ErrMemberNotFound: no member with that id is recorded.
	ErrMemberNotFound = errors.New("fsm: member not found")
	// ErrBadSnapshot: a snapshot stream is not one this FSM wrote or is
	// damaged.
	ErrBadSnapshot = errors.New("fsm: bad snapshot")
	// ErrBadBackup: a backup file is not one cairn wrote, or is corrupted
	// or truncated.
	ErrBadBackup = errors.New("fsm: bad backup file")
	// ErrUnsupportedCommand: a command holds a type or fields this build
	// does not know (it comes from a newer release); no replica of this
	// build may apply it.
	ErrUnsupportedCommand = errors.New("fsm: command unknown to this build")
	// ErrInUse: another process has the state database open.
	ErrInUse = errors.New("fsm: data directory in use")
	// ErrStorage: the state database could not be written (a full disk, an
	// I/O error); nothing was applied, and the same entries may be applied
	// again once the cause is gone.
	ErrStorage = errors.New("fsm: cannot write the state database")
	// ErrDamaged: a data file (a bbolt database, a snapshot) is damaged or
	// truncated (CheckDatabase).
	ErrDamaged = errors.New("fsm: damaged data file")
	// ErrClosed: the FSM has been closed.
	ErrClosed = errors.New("fsm: closed")
)
