package fsm

import raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"

// EventType is the kind of a change.
type EventType int

// Event types.
const (
	// EventPut: a key was written.
	EventPut EventType = iota + 1
	// EventDelete: a key was deleted.
	EventDelete
	// EventDeleteObject: all of an object's state was deleted at once.
	EventDeleteObject
)

// Event is one change to one key (or, for EventDeleteObject, to a whole
// object) made by an applied command.
type Event struct {
	Type   EventType
	Object string
	Key    string // empty for EventDeleteObject
	// Value and Encoding are the new value of a put; Value is owned by
	// the event and must not be modified.
	Value          []byte
	Encoding       raftcmdv1.ValueEncoding
	CreateRevision uint64 // of the key; 0 for deletes
	ModRevision    uint64 // the change's revision
}

// ChangeSet is every change one log entry made: one transaction's events
// arrive together, in the order the command made them.
type ChangeSet struct {
	Revision  uint64
	Namespace string
	Events    []Event
}

// Observer is told, on the goroutine that applies, about what has been
// applied to the state (queries see it). It must not block for long and
// must not call back into ApplyBatch or Restore; it may call the query
// methods.
type Observer interface {
	// Committed reports that the state now reflects every entry up to
	// applied, and the changes of the entries in this batch (in order;
	// entries that changed nothing have no ChangeSet).
	Committed(applied uint64, changes []ChangeSet)
	// Restored reports that the whole state was replaced by a snapshot at
	// index: changes between the previous state and this one are unknown.
	// It comes again with a higher index when the restored state is then
	// covered to a later log index (CoverIndex): history restarts there.
	Restored(index uint64)
}

// emit records an event of the command being applied.
func (a *applier) emit(e Event) {
	e.ModRevision = a.index
	a.events = append(a.events, e)
}
