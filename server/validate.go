package server

import (
	"github.com/cairndb/cairn/fsm"
)

// The server checks every request before it proposes anything, so that a
// rejected request costs no log entry; the FSM checks the fixed limits
// again as a safety net.

func checkNamespace(ns string) error { return fsm.ValidateNamespace(ns) }

func checkObject(ns, object string) error {
	if err := fsm.ValidateNamespace(ns); err != nil {
		return err
	}
	return fsm.ValidateObjectName(object)
}

func checkKey(field, key string) error { return fsm.ValidateKey(field, key) }

// checkValue enforces MaxValueBytes.
func (s *Server) checkValue(field string, v []byte) error {
	if len(v) > s.cfg.MaxValueBytes {
		return invalidf("%s is %d bytes, limit is %d (max value bytes)", field, len(v), s.cfg.MaxValueBytes)
	}
	return nil
}

// checkBatchSize enforces MaxBatchKeys.
func (s *Server) checkBatchSize(field string, n int) error {
	if n > s.cfg.MaxBatchKeys {
		return invalidf("%s holds %d keys, limit is %d", field, n, s.cfg.MaxBatchKeys)
	}
	return nil
}

// checkRequestBytes enforces MaxRequestBytes on the keys and values a
// write carries.
func (s *Server) checkRequestBytes(n int) error {
	if n > s.cfg.MaxRequestBytes {
		return invalidf("request carries %d bytes of keys and values, limit is %d", n, s.cfg.MaxRequestBytes)
	}
	return nil
}

// checkBound validates an optional key bound of a listing.
func checkBound(field, key string) error {
	if key == "" {
		return nil
	}
	if len(key) > fsm.MaxKeyBytes {
		return invalidf("%s is %d bytes, limit is %d", field, len(key), fsm.MaxKeyBytes)
	}
	return nil
}
